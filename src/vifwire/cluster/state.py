"""The rig's state file: every pid and name a `vifwire cluster up` created.

One rig per run dir: the symlink `<run_dir>/cluster` names it, and everything
the rig owns lives in `<run_dir>/cluster-<id>/`: this file (`cluster.json`),
databases, broker, OVS, logs, config files. The invariant `down` relies on: a
name (namespace, veth) is written here *before* it is created, and a pid right
after its process exists, so an `up` that crashed midway still leaves a file
that names all it made. `down` stops exactly the recorded pids (after checking
each still runs the program recorded with it, so a recycled pid is never
signalled) and deletes exactly the recorded names; nothing is found by pattern.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

STATE_FILE = "cluster.json"


class ClusterError(Exception):
    """The rig cannot be started, found or stopped; the message is one line for the user."""


@dataclass
class Process:
    """A process the rig started: stopped by pid, after its program is checked."""

    name: str  # "postgresql", "rabbitmq", "server", "agent:<host>", "ovs:<host>:ovsdb-server"
    pid: int
    program: str  # a string its /proc/<pid>/cmdline must contain
    log: str = ""
    stop_signal: int = signal.SIGTERM


@dataclass
class Host:
    name: str  # the host name its agent registers (binding:host_id)
    netns: str
    local_ip: str  # its tunnel (underlay) address
    run_dir: str  # the agent's --run-dir; its OVS is in <run_dir>/ovs
    underlay_link: str  # the veth end in the underlay namespace
    host_link: str  # the veth end in the host namespace (a port of br-phy)
    config: str = ""  # the agent's configuration file

    @property
    def ovs_dir(self) -> Path:
        return Path(self.run_dir) / "ovs"

    @property
    def ovsdb(self) -> str:
        return f"unix:{self.ovs_dir / 'db.sock'}"


@dataclass
class RigState:
    id: str
    dir: str
    status: str = "starting"  # starting -> up; a failed start is torn down
    database: str = "postgresql"  # postgresql | mariadb | external
    database_url: str = ""
    bus: str = "rabbitmq"  # rabbitmq | external
    bus_url: str = ""
    bus_prefix: str = ""
    api_url: str = ""
    server_run_dir: str = ""  # the server's run dir: its Nova token, `boot`'s run state
    service_ports: dict[str, int] = field(default_factory=dict)  # kept across restarts
    nova_url: str = ""  # where the server posts events: `vifwire boot` listens there
    workers: int = 0
    underlay_netns: str = ""
    underlay_cidr: str = ""
    netns: list[str] = field(default_factory=list)  # every namespace, in creation order
    links: list[str] = field(default_factory=list)  # root-namespace link names
    processes: list[Process] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. a setting no config key carries

    @property
    def path(self) -> Path:
        return Path(self.dir) / STATE_FILE

    def save(self) -> None:
        """Written whole to a temporary name and renamed: never half a file."""
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.touch(mode=0o600)  # it holds the database's and the broker's URLs
        partial.write_bytes(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))
        partial.replace(self.path)

    def add_process(self, process: Process) -> None:
        self.processes.append(process)
        self.save()

    def process(self, name: str) -> Process | None:
        return next((p for p in self.processes if p.name == name), None)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise ClusterError(f"host {name!r} is not in the cluster (hosts: {known})")

    @classmethod
    def load(cls, path: Path) -> RigState:
        try:
            data: dict[str, Any] = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ClusterError(f"cannot read the cluster state file {path}: {exc}") from exc
        data["processes"] = [Process(**p) for p in data.get("processes", [])]
        data["hosts"] = [Host(**h) for h in data.get("hosts", [])]
        return cls(**data)


def current_link(run_dir: Path) -> Path:
    """`<run_dir>/cluster`: a symlink to the run dir's rig directory."""
    return run_dir / "cluster"


def find(run_dir: Path, cluster: Path | None = None) -> RigState | None:
    """The rig named by `cluster` (its state file or directory), else the run dir's."""
    if cluster is not None:
        path = cluster / STATE_FILE if cluster.is_dir() else cluster
        if not path.exists():
            raise ClusterError(f"no cluster state file at {path}")
        return RigState.load(path)
    path = current_link(run_dir) / STATE_FILE
    return RigState.load(path) if path.exists() else None


def point_at(run_dir: Path, state: RigState) -> None:
    link = current_link(run_dir)
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(Path(state.dir).name)


def unpoint(run_dir: Path, state: RigState) -> None:
    link = current_link(run_dir)
    with contextlib.suppress(OSError):
        if link.is_symlink() and link.resolve() == Path(state.dir).resolve():
            link.unlink()


def running(process: Process) -> bool:
    """True while `process.pid` runs the recorded program (not a zombie, not recycled)."""
    from vifwire.procs import process_alive

    if not process_alive(process.pid):
        return False
    try:
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return process.program.encode() in cmdline


def new_id() -> str:
    return os.urandom(3).hex()


def stop(process: Process, timeout: float = 20.0) -> None:
    """Its stop signal, up to `timeout` to exit, then SIGKILL; only if it is still ours."""
    from vifwire.procs import process_alive

    if not running(process):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, process.stop_signal)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_alive(process.pid):
        time.sleep(0.05)
    if process_alive(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        while process_alive(process.pid):
            time.sleep(0.05)
