#!/usr/bin/env bash
# Starts the machine's PostgreSQL, MariaDB and RabbitMQ when one is down (the
# tests use them for real), and waits until each answers. Does nothing to a
# service that is already up.
set -euo pipefail

wait_for() {  # wait_for NAME CHECK...: up to 60 s
  local name=$1; shift
  for _ in $(seq 60); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "error: $name did not come up" >&2; return 1
}

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
fi
if ! mysqladmin -uroot -h127.0.0.1 ping >/dev/null 2>&1; then
  echo "starting MariaDB" >&2
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for MariaDB mysqladmin -uroot -h127.0.0.1 ping
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "starting RabbitMQ" >&2
  rabbitmq-server -detached
  wait_for RabbitMQ rabbitmqctl -q await_startup
fi
