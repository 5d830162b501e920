#!/usr/bin/env bash
# The test suite: real Open vSwitch, namespaces, SQLite, PostgreSQL, MariaDB and RabbitMQ.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "error: run as root (Open vSwitch daemons, network namespaces)" >&2; exit 1; fi
scripts/install.sh test
scripts/services.sh
.venv/bin/ruff check src tests bench
.venv/bin/lint-imports  # the import directions of ARCHITECTURE.md ([tool.importlinter])
# Unbuffered: if CI kills a run, its log shows how far it got. A hung test fails
# after 300 s with every thread's stack (pytest-timeout, pyproject.toml); should
# its teardown hang as well, `timeout` ends the run at 70 min, inside CI's 90.
# Two pytest workers, a test module each at a time (--dist loadscope: a module's
# fixtures are set up once): most tests wait on daemons, namespaces and brokers,
# so two share the 2 CPUs well (the suite took 12 min 17 s so, 21 min 25 s alone,
# 2026-12-04). Every test's names, databases, vhosts and ports are its own.
PYTHONUNBUFFERED=1 exec timeout --foreground -k 30 70m .venv/bin/pytest -q -p no:cacheprovider \
    -n 2 --dist loadscope --durations=25 "$@"  # the slowest 25: the CI budget is ~20 min
