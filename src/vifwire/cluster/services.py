"""The rig's private database and broker: each its own server under the rig dir.

A rig never touches the machine's shared PostgreSQL, MariaDB or RabbitMQ: it
starts its own instance on a free port with its data, sockets, logs and pid
file under `<rig dir>/<service>/`, so it can be killed or restarted (issue 9's
fault tests) without disturbing anyone else, and `down` stops it by its pid.

- PostgreSQL: `initdb` + `pg_ctl start` as the `postgres` user (the server
  refuses root), trust auth for `root` on 127.0.0.1 only, fsync off (a rig's
  data is disposable). The pid is the postmaster's, from `postmaster.pid`.
- MariaDB: `mariadb-install-db` + `mariadbd` as `mysql`, root without a
  password on 127.0.0.1, no binary log.
- RabbitMQ: `rabbitmq-server` (the script under /usr/lib/rabbitmq/bin, not the
  /usr/sbin wrapper that su's to the rabbitmq user) with its own node name,
  ports, Mnesia and log dirs, an empty plugin list (no management listener to
  collide on) and HOME in the rig dir, so its Erlang cookie is its own. It
  registers its node name with the machine's epmd like any Erlang node.

Each `start_*` takes its ports from `ports` (the state's), picking free ones
the first time, so a restart comes back where its clients look; it hands each
process to `record` the moment it exists (so a start that fails later leaves
nothing unrecorded) and returns the URL clients use.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from vifwire.cluster.state import ClusterError, Process

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT_S = 90.0
Record = Callable[[Process], None]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_port_free(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ClusterError(f"the API port 127.0.0.1:{port} is in use ({exc.strerror}); "
                               "pick another with --api-port") from exc


def _run(argv: list[str], what: str, timeout: float = 120.0, **kwargs: object) -> str:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        raise ClusterError(f"{what}: {argv[0]} is not installed")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False, **kwargs)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"{what}: {argv[0]} timed out after {timeout:.0f}s") from exc
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise ClusterError(f"{what}: {' '.join(argv[:2])} failed: "
                           f"{reason[-1] if reason else done.returncode}")
    return str(done.stdout)


def _give(path: Path, user: str) -> None:
    """Make `path` the daemon user's; it must also be able to reach it."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, user)
    reach = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)],
                           capture_output=True, check=False)
    if reach.returncode != 0:
        raise ClusterError(f"the {user} user cannot reach {path} (a parent directory is "
                           "not searchable by others); use a --run-dir it can reach, "
                           "e.g. under /var/run or /tmp")


def _wait_port(port: int, process: Process, log: Path, what: str,
               also: Path | None = None) -> None:
    from vifwire.cluster.state import running

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if not running(process):
            said = tail(also) if also is not None and also.exists() else tail(log)
            raise ClusterError(f"{what} exited while starting: {said}")
        time.sleep(0.1)
    raise ClusterError(f"{what} did not listen on 127.0.0.1:{port} in {START_TIMEOUT_S:.0f}s")


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no log at {path})"
    return " | ".join(line.strip() for line in text[-lines:]) or f"(empty log {path})"


def start_postgresql(base: Path, record: Record, ports: dict[str, int]) -> str:
    data, log = base / "data", base / "postgresql.log"
    port = ports.setdefault("postgresql", free_port())
    _give(base, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    fresh = not (data / "PG_VERSION").exists()
    if fresh:
        _run([*as_pg, "initdb", "-D", str(data), "-U", "root", "--auth=trust", "-E", "UTF8",
              "--no-sync"], "PostgreSQL", cwd=str(base))
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off " \
              "-c synchronous_commit=off -c max_connections=300"
    _run([*as_pg, "pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options,
          "start"], "PostgreSQL", cwd=str(base))
    pid = int((data / "postmaster.pid").read_text().split()[0])
    # SIGINT is its "fast" shutdown: SIGTERM would wait for every client to leave.
    record(Process("postgresql", pid, "postgres", str(log), stop_signal=signal.SIGINT))
    if fresh:
        _run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "root", "-d", "postgres",
              "-q", "-c", "CREATE DATABASE vifwire"], "PostgreSQL")
    return f"postgresql+psycopg://root@127.0.0.1:{port}/vifwire"


def start_mariadb(base: Path, record: Record, ports: dict[str, int]) -> str:
    data, log = base / "data", base / "error.log"
    port = ports.setdefault("mariadb", free_port())
    _give(base, "mysql")
    fresh = not (data / "mysql").exists()
    if fresh:
        _run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=mysql",
              "--auth-root-authentication-method=normal", "--skip-test-db"], "MariaDB")
    out = base / "mariadbd.out"  # what it says before its error log is open
    with out.open("ab") as early:
        daemon = subprocess.Popen([
            "mariadbd", "--no-defaults", f"--datadir={data}", "--user=mysql",
             f"--port={port}", "--bind-address=127.0.0.1", f"--socket={base / 'mysqld.sock'}",
             f"--pid-file={base / 'mariadbd.pid'}", f"--log-error={log}", "--skip-log-bin",
             "--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=2",
             "--max-connections=300"],
            stdin=subprocess.DEVNULL, stdout=early, stderr=subprocess.STDOUT,
            start_new_session=True)
    process = Process("mariadb", daemon.pid, "mariadbd", str(log))
    record(process)
    _wait_port(port, process, out, "MariaDB", also=log)
    if fresh:
        _run(["mariadb", "-h", "127.0.0.1", "-P", str(port), "-u", "root", "-e",
              "CREATE DATABASE vifwire"], "MariaDB")
    return f"mysql+pymysql://root@127.0.0.1:{port}/vifwire"


def rabbitmq_env(base: Path, node: str, port: int, dist_port: int) -> dict[str, str]:
    return {**os.environ, "HOME": str(base), "RABBITMQ_NODENAME": node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port), "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"), "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf")}


def start_rabbitmq(base: Path, rig_id: str, record: Record, ports: dict[str, int]) -> str:
    """The node and its launcher script, both recorded (the script ends with the node)."""
    server = RABBITMQ_BIN / "rabbitmq-server"
    if not server.exists():
        raise ClusterError("RabbitMQ is not installed (apt-get install rabbitmq-server)")
    base.mkdir(parents=True, exist_ok=True)
    (base / "enabled_plugins").write_text("[].\n")
    port = ports.setdefault("rabbitmq", free_port())
    dist_port = ports.setdefault("rabbitmq-dist", free_port())
    (base / "rabbit.pid").unlink(missing_ok=True)  # a restart waits for the new one
    env = rabbitmq_env(base, f"vifwire-{rig_id}@localhost", port, dist_port)
    log = base / "rabbitmq-server.log"
    with log.open("ab") as out:
        launcher = subprocess.Popen([str(server)], env=env, cwd=str(base), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
    record(Process("rabbitmq-launcher", launcher.pid, "rabbitmq-server", str(log)))
    pid_file = base / "rabbit.pid"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not pid_file.exists() or not pid_file.read_text().strip():
        if launcher.poll() is not None or time.monotonic() > deadline:
            raise ClusterError(f"RabbitMQ did not start: {tail(log)}")
        time.sleep(0.1)
    record(Process("rabbitmq", int(pid_file.read_text().strip()), "beam", str(log)))
    _run([str(RABBITMQ_BIN / "rabbitmqctl"), "wait", "--timeout", str(int(START_TIMEOUT_S)),
          str(pid_file)], "RabbitMQ", timeout=START_TIMEOUT_S + 10, env=env, cwd=str(base))
    return f"amqp://guest:guest@127.0.0.1:{port}/"
