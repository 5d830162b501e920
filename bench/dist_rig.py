"""The distributed benches' rig: what one run starts, measures and removes.

A `Rig` owns one run's names (a random id in each): a PostgreSQL database of its
own in the shared server, a RabbitMQ vhost of its own on the shared broker, a
queue prefix, free TCP ports, a base directory and, per simulated host, a
network namespace with a private Open vSwitch run by `vifwire agent`. Every
process it starts (the `vifwire server` supervisor, the agents, the embedded
`vifwire stack`) is recorded by pid and stopped by that pid; `close()` removes
exactly what the rig made, by the names it recorded, whatever failed before.

The driver of every storm is the CLI a user runs: `vifwire boot --json` (with
`--target` in distributed mode), so the bench measures what a user sees.

CPU is sampled by a thread (`CpuSampler`) every `interval` seconds as
cumulative CPU seconds per component; a storm's CPU is read off that timeline
between its first port create and its last network-vif-plugged (linear
interpolation between the samples around each instant), so teardown and
pings never count.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import create_engine, text

VIFWIRE = [sys.executable, "-m", "vifwire.cli.main"]
PG_ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
BROKER = "amqp://guest:guest@127.0.0.1:5672"
BROKER_PORT = 5672
PG_PORT = 5432


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(what: str, ready: Callable[[], bool], timeout: float = 90.0,
               alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not alive():
            raise RuntimeError(f"gave up waiting for {what}: the process exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout:g}s")
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=90)


def listener_pid(port: int) -> int | None:
    """The pid listening on TCP `port` (the shared broker's beam.smp, the postmaster)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


@dataclass
class Proc:
    """One process the rig started, stopped by its pid."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Host:
    name: str
    netns: str
    run_dir: Path
    agent: Proc | None = None


@dataclass
class Rig:
    """One run's names and processes (see the module docstring)."""

    base: Path
    rid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    db_name: str | None = None
    vhost: str | None = None
    api_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    embedded: Host | None = None
    # `--trace`: every server worker, agent and boot marks each port's stages here
    # (VIFWIRE_TRACE_DIR), written when each process stops (vifwire.trace).
    trace_dir: Path | None = None
    # `--set SECTION.KEY=VALUE`: settings of the server and agents, for A/B runs
    settings: list[str] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def database_url(self) -> str:
        assert self.db_name is not None
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.db_name}"

    def env(self, nova_url: str) -> dict[str, str]:
        """VIFWIRE_* for the server and agents of this rig (the local bus until a vhost
        is made: one worker, no agent)."""
        bus = "local" if self.vhost is None else f"{BROKER}/{self.vhost}"
        # One project boots them all: past Neutron's default port quota of 500.
        config = self.base / "vifwire.conf"
        config.write_text(config_text(["quotas.quota_port=-1", *self.settings]))
        return {"VIFWIRE_CONFIG_FILE": str(config), "VIFWIRE_BUS_URL": bus,
                "VIFWIRE_BUS_PREFIX": f"vwb{self.rid}",
                "VIFWIRE_DATABASE_URL": self.database_url, "VIFWIRE_API_PORT": str(self.api_port),
                "VIFWIRE_NOVA_URL": nova_url, **self.trace_env()}

    def trace_env(self) -> dict[str, str]:
        return {"VIFWIRE_TRACE_DIR": str(self.trace_dir)} if self.trace_dir else {}

    # -- the shared engines: a database and a vhost of our own -------------------------

    def create_database(self) -> None:
        self.db_name = f"vwbench_{self.rid}"
        with create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))

    def create_vhost(self) -> None:
        self.vhost = f"vwbench-{self.rid}"
        rabbitmqctl("add_vhost", self.vhost)
        rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

    # -- processes --------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], run_dir: Path, env: dict[str, str]) -> Proc:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = self.base / f"{name}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("VIFWIRE_")}
        full_env.update({"VIFWIRE_RUN_DIR": str(run_dir), **env})
        with log.open("ab") as out:
            popen = subprocess.Popen([*VIFWIRE, *args], stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=full_env)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def cli(self, args: list[str], run_dir: Path, env: dict[str, str],
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("VIFWIRE_")}
        full_env.update({"VIFWIRE_RUN_DIR": str(run_dir), "COLUMNS": "200", **env})
        return subprocess.run([*VIFWIRE, *args], capture_output=True, text=True, env=full_env,
                              timeout=timeout, check=False)

    def start_server(self, workers: int, nova_url: str) -> Proc:
        env = self.env(nova_url)
        done = self.cli(["db", "upgrade"], self.base / "server", env)
        if done.returncode != 0:
            raise RuntimeError(f"vifwire db upgrade failed: {done.stderr.strip()}")
        server = self.spawn(f"server-w{workers}", ["server", "--workers", str(workers)],
                            self.base / "server", env)
        wait_until("the API", lambda: answers(f"{self.api_url}/v2.0/networks"),
                   alive=server.alive)
        wait_until(f"{workers} workers", lambda: len(self.children(server)) == workers,
                   alive=server.alive)
        return server

    @staticmethod
    def children(proc: Proc) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(proc.pid).children()]
        except psutil.Error:
            return []

    def start_agent(self, host: str, nova_url: str) -> Host:
        entry = Host(host, f"vwb-{self.rid}-{len(self.hosts)}", self.base / f"agent-{host}")
        self.hosts.append(entry)  # recorded first: close() removes its netns whatever happens
        entry.agent = self.spawn(f"agent-{host}", ["--host", host, "--ovs-netns", entry.netns,
                                                   "agent"], entry.run_dir, self.env(nova_url))
        return entry

    def wait_agents_alive(self) -> None:
        names = {h.name for h in self.hosts}

        def alive() -> bool:
            try:
                agents = httpx.get(f"{self.api_url}/v2.0/agents", timeout=5).json()["agents"]
            except (httpx.HTTPError, KeyError, ValueError):
                return False
            return names <= {a["host"] for a in agents if a.get("alive")}

        wait_until(f"agents {sorted(names)} alive", alive,
                   alive=lambda: all(h.agent is None or h.agent.alive() for h in self.hosts))

    def start_embedded(self, nova_url: str) -> Host:
        entry = Host("bench-embedded", f"vwb-{self.rid}-emb", self.base / "embedded")
        self.embedded = entry
        done = self.cli([*self.host_flags(entry, nova_url), "up"], entry.run_dir, {})
        if done.returncode != 0:
            raise RuntimeError(f"vifwire up failed: {done.stderr.strip()}")
        return entry

    def host_flags(self, host: Host, nova_url: str) -> list[str]:
        return ["--run-dir", str(host.run_dir), "--host", host.name, "--ovs-netns", host.netns,
                "--api-port", str(self.api_port), "--nova-url", nova_url]

    def stack_pid(self) -> int:
        assert self.embedded is not None
        return int((self.embedded.run_dir / "stack.pid").read_text().strip())

    # -- the driver -------------------------------------------------------------------

    def boot_cmd(self, host: Host, count: int, nova_url: str, network: str,
                 connectivity: bool, external: bool, max_concurrent_builds: int = 0
                 ) -> list[str]:
        args = [*VIFWIRE, *self.host_flags(host, nova_url), "boot", "--json", "--count",
                str(count), "--network", network, "--timeout", "120",
                "--max-concurrent-builds", str(max_concurrent_builds)]
        if external:
            args += ["--target", self.api_url]
        return args + ([] if connectivity else ["--no-connectivity"])

    def close(self) -> None:
        """Remove what this rig made, by its recorded names and pids."""
        for proc in reversed(self.procs):
            proc.stop()
        for host in [*self.hosts, *([self.embedded] if self.embedded else [])]:
            self.cli(["--ovs-netns", host.netns, "down"], host.run_dir, {}, timeout=60)
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, check=False)
        if self.vhost is not None:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost],
                           capture_output=True, check=False, timeout=90)
        if self.db_name is not None:
            with create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))


def make_network(api_url: str, name: str, cidr: str) -> str:
    """The storm's network (a `--target` boot does not create one), by name."""
    with httpx.Client(base_url=api_url, timeout=60) as client:
        found = client.get("/v2.0/networks", params={"name": name}).json()["networks"]
        if found:
            return str(found[0]["id"])
        net = client.post("/v2.0/networks", json={"network": {"name": name}})
        net.raise_for_status()
        net_id = str(net.json()["network"]["id"])
        client.post("/v2.0/subnets", json={"subnet": {
            "network_id": net_id, "ip_version": 4, "cidr": cidr,
            "name": f"{name}-v4"}}).raise_for_status()
        return net_id


def fill_group(api_url: str, network_id: str, count: int, cidr: str = "10.64.0.0/16",
               clients: int = 4) -> None:
    """`count` unbound ports on a subnet of their own on the network, in the
    default security group of the storm's project: every port the storm binds
    then carries, and every member round sends, a member list of `count` more
    addresses (what a storm of `count` more VMs would make, without booting them)."""
    with httpx.Client(base_url=api_url, timeout=60) as client:
        subnet = client.post("/v2.0/subnets", json={"subnet": {
            "network_id": network_id, "ip_version": 4, "cidr": cidr, "name": "members"}})
        subnet.raise_for_status()
        body = {"port": {"network_id": network_id,
                         "fixed_ips": [{"subnet_id": subnet.json()["subnet"]["id"]}]}}
        first = client.post("/v2.0/ports", json=body)
        first.raise_for_status()
        project = first.json()["port"]["project_id"]
        client.put(f"/v2.0/quotas/{project}", json={"quota": {"port": -1}}).raise_for_status()

    def create(n: int) -> None:
        with httpx.Client(base_url=api_url, timeout=60) as client:
            for _ in range(n):
                client.post("/v2.0/ports", json=body).raise_for_status()

    share = [(count - 1) // clients + (1 if i < (count - 1) % clients else 0)
             for i in range(clients)]
    threads = [threading.Thread(target=create, args=(n,)) for n in share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def parse_boot(stdout: str, stderr: str) -> dict[str, Any]:
    try:
        summary: dict[str, Any] = json.loads(stdout)
    except ValueError:
        raise RuntimeError(f"vifwire boot printed no JSON: {stderr.strip()[-600:]}") from None
    return summary


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary dir for a bench's rigs: removed after a run that went through,
    kept (and named on stderr) after one that failed, for its logs and run dirs."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield base
    except BaseException:
        print(f"logs and run dirs kept in {base}", file=sys.stderr)
        raise
    shutil.rmtree(base, ignore_errors=True)


# -- CPU ------------------------------------------------------------------------------

Probe = Callable[[], dict[str, float]]


def pids_probe(name: str, pids: Callable[[], list[int]], every: int = 1,
               children: bool = False) -> Probe:
    """Cumulative CPU seconds of `pids()` (re-listed every `every` samples); a process
    that exits keeps its last reading, so the total never goes backwards. With
    `children`, the children each process has waited for count too (a boot's pings)."""
    last: dict[int, float] = {}
    procs: dict[int, psutil.Process] = {}
    calls = [0]

    def read() -> dict[str, float]:
        if calls[0] % every == 0:
            for pid in pids():
                if pid not in procs:
                    try:
                        procs[pid] = psutil.Process(pid)
                    except psutil.Error:
                        continue
        calls[0] += 1
        for pid, proc in list(procs.items()):
            try:
                t = proc.cpu_times()
                last[pid] = t.user + t.system + (
                    t.children_user + t.children_system if children else 0.0)
            except psutil.Error:
                del procs[pid]
        return {name: sum(last.values())}

    return read


def machine_probe(name: str) -> Probe:
    """CPU seconds all CPUs spent busy (not idle or waiting for I/O): what the storm
    left of the machine, beside what the named components used."""
    hz = os.sysconf("SC_CLK_TCK")

    def read() -> dict[str, float]:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]
        return {name: (sum(ticks) - ticks[3] - ticks[4]) / hz}  # minus idle and iowait

    return read


def pg_backends(db_name: str) -> Callable[[], list[int]]:
    """The PostgreSQL backends serving `db_name`: children of the postmaster whose
    command line names the database ("postgres: root vwbench_x 127.0.0.1(...)")."""
    postmaster = listener_pid(PG_PORT)

    def pids() -> list[int]:
        if postmaster is None:
            return []
        out = []
        try:
            children = psutil.Process(postmaster).children()
        except psutil.Error:
            return []
        for child in children:
            try:
                if db_name in " ".join(child.cmdline()):
                    out.append(child.pid)
            except psutil.Error:
                continue
        return out

    return pids


class CpuSampler:
    """A thread recording (time, {component: CPU seconds}) every `interval` seconds."""

    def __init__(self, probes: list[Probe], interval: float = 0.05) -> None:
        self.probes, self.interval = probes, interval
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench:cpu", daemon=True)

    def _sample(self) -> None:
        values: dict[str, float] = {}
        for probe in self.probes:
            values.update(probe())
        self.samples.append((time.time(), values))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def at(self, t: float) -> dict[str, float]:
        """Each component's CPU seconds at time t (interpolated between samples)."""
        before = max((s for s in self.samples if s[0] <= t), default=self.samples[0],
                     key=lambda s: s[0])
        after = min((s for s in self.samples if s[0] >= t), default=self.samples[-1],
                    key=lambda s: s[0])
        if after[0] == before[0]:
            return dict(before[1])
        share = (t - before[0]) / (after[0] - before[0])
        return {k: before[1][k] + share * (after[1].get(k, before[1][k]) - before[1][k])
                for k in before[1]}

    def between(self, t0: float, t1: float) -> dict[str, float]:
        start, end = self.at(t0), self.at(t1)
        return {k: end[k] - start.get(k, 0.0) for k in end}


def config_text(assignments: list[str]) -> str:
    """`SECTION.KEY=VALUE` lines as vifwire.conf's INI (the last of a key wins)."""
    sections: dict[str, dict[str, str]] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        section, dot, key = name.partition(".")
        if not sep or not dot or not section or not key:
            raise ValueError(f"--set wants SECTION.KEY=VALUE, got {assignment!r}")
        sections.setdefault(section, {})[key] = value
    return "".join(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
                   for section, keys in sections.items())
