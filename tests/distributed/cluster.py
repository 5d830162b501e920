"""Distributed mode on one host, as an operator runs it, with every process ours to kill.

`Cluster` starts, under one private base directory:

* a PostgreSQL database of its own in the shared server (127.0.0.1:5432),
  created with a random name and dropped (WITH FORCE) at `stop`;
* a private RabbitMQ node (`PrivateBroker` of the bus tests: its own node name,
  ports and files), so a test may SIGKILL it without touching the shared one;
* `vifwire db upgrade`, then `vifwire server --workers N` (a supervisor that
  restarts a dead worker);
* `vifwire agent --host NAME --ovs-netns NS`: the host's agent as its own
  process, with a private Open vSwitch in its own network namespace.

The server and the agent share one run dir (as on a single machine): the
server's Nova token and the agent's OVS live there, and a storm driven with
`settings` finds both. Every process is started in a session of its own, found
again by the pid we recorded (the workers by the supervisor's children), and
stopped by that pid; the namespace, the database and the broker go by the
names we gave them. Used by tests/distributed and bench/chaos.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from bus.conftest import PrivateBroker, free_port  # type: ignore[import-not-found]
from vifwire.settings import Settings

VIFWIRE = [sys.executable, "-m", "vifwire.cli.main"]
PG_ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
AGENT_RUNNING = "vifwire agent of host {host} is running"
WORKER_RESTARTED = "(pid {pid}) died with signal SIGKILL; restarted as pid "


class ClusterError(Exception):
    """A process of the cluster did not come up (its log's tail is in the message)."""


def wait_until(what: str, done: Callable[[], bool], timeout: float = 90,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise ClusterError(f"timed out after {timeout} s waiting for {what}\n{tail}")
        time.sleep(0.05)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Cluster:
    """One host's distributed stack: database, private broker, server workers, agent."""

    def __init__(self, base: Path, workers: int = 2, verbose: bool = False,
                 keep_logs: Path | None = None) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.base = base
        self.run_dir = base / "run"
        self.logs = base / "logs"
        self.workers = workers
        self.host = f"dist-{self.id}"
        self.netns = f"vwdist{self.id}"
        self.database = f"vwdist_{os.getpid()}_{self.id}"
        # Its own temporary directory: the node runs as the rabbitmq user, who cannot
        # enter our (root-only) base directory.
        self.broker_dir = Path(tempfile.mkdtemp(prefix=f"vw-rabbit-{self.id}-"))
        self.broker = PrivateBroker(self.broker_dir)
        self.settings = Settings(run_dir=self.run_dir, host=self.host, api_port=free_port(),
                                 nova_url=f"http://127.0.0.1:{free_port()}/v2.1",
                                 ovs_netns=self.netns, bus_url=self.broker.url,
                                 bus_prefix=f"vwd{self.id}",
                                 database_url=PG_ADMIN_URL.rsplit("/", 1)[0]
                                 + f"/{self.database}")
        self.server: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_starts = 0
        self.verbose = verbose  # -v: INFO logs (each port's VLAN decisions)
        self.keep_logs = keep_logs  # copied there at stop
        self._db_made = False

    # the environment every vifwire process of this cluster gets

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIFWIRE_")}
        return {**env, "VIFWIRE_RUN_DIR": str(s.run_dir), "VIFWIRE_HOST": s.host,
                "VIFWIRE_API_PORT": str(s.api_port), "VIFWIRE_NOVA_URL": s.nova_url,
                "VIFWIRE_OVS_NETNS": self.netns, "VIFWIRE_BUS_URL": s.bus_url,
                "VIFWIRE_BUS_PREFIX": s.bus_prefix, "VIFWIRE_DATABASE_URL": s.database_url,
                "COLUMNS": "200"}

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*VIFWIRE, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env(), check=False)

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:  # the child keeps its own copy of the descriptor
            return subprocess.Popen([*VIFWIRE, *args], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env(),
                                    start_new_session=True)

    # start and stop

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self._admin(f'CREATE DATABASE "{self.database}"')
        self._db_made = True
        self.broker.start()
        upgraded = self.cli("db", "upgrade")
        if upgraded.returncode != 0:
            raise ClusterError(f"vifwire db upgrade failed: {upgraded.stderr}")
        self.start_server()
        self.start_agent()

    def start_server(self) -> None:
        log = self.logs / "server.log"
        self.server = self._spawn(["server", "--workers", str(self.workers)], log)
        wait_until("the API", lambda: self._answers("/v2.0/networks"), log=log)
        wait_until(f"{self.workers} workers", lambda: len(self.worker_pids()) == self.workers,
                   log=log)

    def start_agent(self) -> None:
        """Start the agent; returns once it says it is running (OVS up, bus consumed)."""
        self.agent_starts += 1
        log = self.logs / f"agent-{self.agent_starts}.log"
        self.agent = self._spawn(["-v", "agent"] if self.verbose else ["agent"], log)
        line = AGENT_RUNNING.format(host=self.host)
        agent = self.agent
        wait_until("the agent", lambda: agent.poll() is not None or line in log.read_text(
            errors="replace"), log=log)
        if agent.poll() is not None:
            raise ClusterError(f"vifwire agent exited {agent.returncode}: "
                               f"{log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        """Stop everything we started, each by its pid or name; never raises."""
        for proc in (self.agent, self.server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        with contextlib.suppress(Exception):
            self.cli("down")  # the agent's OVS (by its pid files) and the namespace
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)
        with contextlib.suppress(Exception):
            self.broker.kill()
        if self._db_made:
            with contextlib.suppress(Exception):
                self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if self.keep_logs is not None:
            shutil.copytree(self.logs, self.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(self.broker_dir, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)

    # faults and their recovery

    def agent_pid(self) -> int | None:
        return self.agent.pid if self.agent is not None and self.agent.poll() is None else None

    def kill_agent(self) -> None:
        """SIGKILL the agent process (Open vSwitch and the VMs' flows stay)."""
        assert self.agent is not None
        self.agent.kill()
        self.agent.wait()

    def worker_pids(self) -> list[int]:
        return _children(self.server.pid) if self.server is not None else []

    def wait_worker_restarted(self, killed: int, timeout: float = 60) -> None:
        """The supervisor logged the SIGKILLed worker's restart and has all workers."""
        log = self.logs / "server.log"
        line = WORKER_RESTARTED.format(pid=killed)
        wait_until(f"worker {killed}'s restart", lambda: line in log.read_text(
            errors="replace") and len(self.worker_pids()) == self.workers, timeout, log)

    def kill_broker(self) -> None:
        self.broker.kill()

    def start_broker(self) -> None:
        self.broker.start()

    def outbox_rows(self) -> int:
        """Nova events not yet settled (none left: no process can post one again)."""
        engine = create_engine(self.settings.database_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM nova_outbox")).scalar_one())
        finally:
            engine.dispose()

    # helpers

    def _answers(self, path: str) -> bool:
        try:
            return httpx.get(self.settings.api_url + path, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _admin(self, statement: str) -> None:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(statement))
        finally:
            engine.dispose()
