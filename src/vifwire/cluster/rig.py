"""`vifwire cluster up/down/status`: a distributed vifwire on one machine.

`up` starts, in order, each step recorded in the state file as it happens
(`vifwire.cluster.state`): the database (a private PostgreSQL or MariaDB, or an
existing one by URL), RabbitMQ (a private node, or an existing broker by URL;
queues are prefixed with the rig's id either way), `vifwire db upgrade`,
`vifwire server --workers N`, the hosts (`vifwire.cluster.hosts`) and one
`vifwire agent` per host, in the root namespace (so it reaches 127.0.0.1)
with its OVS in the host's namespace. Every vifwire process reads a
configuration file the rig writes, the same file a real host would have
(`<rig dir>/server.conf`, `<rig dir>/hosts/<name>/vifwire.conf`). `up`
returns once the API answers and every host's agent is listed alive; if any
step fails, what was started is stopped again and the failure is one line.

`down` stops what the state file records, newest first, and removes the rig
dir; `status` reads it and asks the API for each agent's last heartbeat.
Supervision is the server's own (its supervisor restarts dead workers); the
rig reports a dead agent or service in `status` and does not restart it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from vifwire.cluster import hosts as rig_hosts
from vifwire.cluster import services
from vifwire.cluster.checks import check_broker, check_database
from vifwire.cluster.state import (
    ClusterError,
    Host,
    Process,
    RigState,
    find,
    new_id,
    point_at,
    running,
    stop,
    unpoint,
)

# Settings field name -> value, rendered as the INI the CLI reads. Returns the
# text and the fields it has no key for.
RenderConfig = Callable[[dict[str, Any]], tuple[str, list[str]]]
VIFWIRE = [sys.executable, "-m", "vifwire.cli.main"]
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RigOptions:
    run_dir: Path
    hosts: int
    render_config: RenderConfig
    database: str = "postgresql"  # postgresql | mariadb
    database_url: str = ""  # an existing database instead of a private one
    bus_url: str = ""  # an existing broker instead of a private node
    workers: int = 4
    api_port: int = 9696
    heartbeat_s: float = 2.0
    ready_timeout_s: float = READY_TIMEOUT_S


def up(options: RigOptions) -> RigState:
    existing = find(options.run_dir)
    if existing is not None:
        raise ClusterError(f"cluster {existing.id} is already in {options.run_dir} "
                           f"(status {existing.status}); run `vifwire cluster down` first")
    rig_id = new_id()
    state = RigState(id=rig_id, dir=str(options.run_dir / f"cluster-{rig_id}"),
                     workers=options.workers, bus_prefix=f"vifwire-{rig_id}",
                     api_url=f"http://127.0.0.1:{options.api_port}",
                     nova_url=f"http://127.0.0.1:{services.free_port()}/v2.1")
    # Outside resources first: an unreachable one costs no start of anything.
    services.check_port_free(options.api_port)
    if options.bus_url:
        check_broker(options.bus_url)
    if options.database_url:
        check_database(options.database_url)
    state.save()
    point_at(options.run_dir, state)
    try:
        _start(state, options)
    except BaseException:
        down(state)
        raise
    state.status = "up"
    state.save()
    return state


def _start(state: RigState, options: RigOptions) -> None:
    base = Path(state.dir)
    lock = threading.Lock()

    def record(process: Process) -> None:
        with lock:
            state.add_process(process)

    def database() -> None:
        if options.database_url:
            state.database, state.database_url = "external", options.database_url
            return
        start = services.start_mariadb if options.database == "mariadb" \
            else services.start_postgresql
        state.database = options.database
        state.database_url = start(base / options.database, record, state.service_ports)

    def broker() -> None:
        if options.bus_url:
            state.bus, state.bus_url = "external", options.bus_url
            return
        state.bus_url = services.start_rabbitmq(base / "rabbitmq", state.id, record,
                                                state.service_ports)

    # Both at once: RabbitMQ's start is the slowest step of `up`.
    with ThreadPoolExecutor(2, thread_name_prefix="cluster-service") as pool:
        for started in [pool.submit(database), pool.submit(broker)]:
            started.result()
    state.save()

    server_conf = base / "server.conf"
    # Its own: the server makes its run dir private (0700), and the database's
    # user must still reach its files in the rig dir for a restart.
    state.server_run_dir = str(base / "server")
    state.notes += _write_config(server_conf, options, {
        "run_dir": state.server_run_dir, "database_url": state.database_url,
        "bus_url": state.bus_url, "bus_prefix": state.bus_prefix, "nova_url": state.nova_url,
        "api_port": options.api_port, "api_workers": options.workers,
        "agent_down_time_s": max(75.0, options.heartbeat_s * 10)})
    _run_vifwire(["--config-file", str(server_conf), "db", "upgrade"], "vifwire db upgrade")
    state.add_process(_spawn("server", ["--config-file", str(server_conf), "server",
                                        "--workers", str(options.workers)], base / "server.log"))
    _wait_api(state, options.ready_timeout_s)

    rig_hosts.plan_hosts(state, options.hosts)
    rig_hosts.create_hosts(state)
    for host in state.hosts:
        host.config = str(Path(host.run_dir) / "vifwire.conf")
        state.notes += _write_config(Path(host.config), options, {
            "host": host.name, "run_dir": host.run_dir, "ovs_netns": host.netns,
            "bus_url": state.bus_url, "bus_prefix": state.bus_prefix,
            "agent_heartbeat_s": options.heartbeat_s, "local_ip": host.local_ip})
        state.add_process(_spawn(f"agent:{host.name}", ["--config-file", host.config, "agent"],
                                 Path(host.run_dir) / "agent.log"))
    _wait_agents(state, options.ready_timeout_s)


def restart(state: RigState, service: str) -> None:
    """Stop the rig's private `service` (postgresql, mariadb or rabbitmq) and start it
    again on the same ports and data: what a fault drill or an upgrade does."""
    names = {"postgresql": ["postgresql"], "mariadb": ["mariadb"],
             "rabbitmq": ["rabbitmq", "rabbitmq-launcher"]}.get(service)
    if names is None or state.process(names[0]) is None:
        private = [n for n in ("postgresql", "mariadb", "rabbitmq") if state.process(n)]
        raise ClusterError(f"{service!r} is not a private service of cluster {state.id} "
                           f"(it has: {', '.join(private)})")
    for process in [p for p in state.processes if p.name in names]:
        stop(process, timeout=30)
        state.processes.remove(process)
    state.save()
    base = Path(state.dir) / service
    if service == "rabbitmq":
        services.start_rabbitmq(base, state.id, state.add_process, state.service_ports)
    else:
        start = services.start_mariadb if service == "mariadb" else services.start_postgresql
        start(base, state.add_process, state.service_ports)


def _write_config(path: Path, options: RigOptions, values: dict[str, Any]) -> list[str]:
    """Write it; notes on what this vifwire's configuration file cannot say."""
    text, missing = options.render_config(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    # 0600: it may hold the database's and the broker's passwords.
    path.touch(mode=0o600)
    path.write_text(text)
    return [f"{path.name}: no configuration key for {field}" for field in missing]


def _run_vifwire(args: list[str], what: str) -> None:
    done = subprocess.run([*VIFWIRE, *args], capture_output=True, text=True, check=False,
                          timeout=300)
    if done.returncode != 0:
        raise ClusterError(f"{what} failed: {_reason(done.stderr or done.stdout)}")


def _reason(text: str) -> str:
    """The process's own "error:" line if it printed one, else its last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line.split("error:", 1)[1].strip() for line in lines if "error:" in line]
    return errors[-1] if errors else (lines[-1] if lines else "no output")


def _spawn(name: str, args: list[str], log: Path) -> Process:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        child = subprocess.Popen([*VIFWIRE, *args], stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    return Process(name, child.pid, "vifwire.cli.main", str(log))


def _exited(state: RigState, names: list[str]) -> None:
    for process in state.processes:
        if process.name in names and not running(process):
            raise ClusterError(f"{process.name} exited while starting: "
                               f"{_reason(Path(process.log).read_text(errors='replace'))}")


def _wait_api(state: RigState, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agents(state, timeout=1.0) is not None:
            return
        _exited(state, ["server"])
        time.sleep(0.2)
    raise ClusterError(f"the server did not answer at {state.api_url} in {timeout:.0f}s")


def _wait_agents(state: RigState, timeout: float) -> None:
    names = {h.name for h in state.hosts}
    deadline = time.monotonic() + timeout
    alive: set[str] = set()
    while time.monotonic() < deadline:
        alive = {a["host"] for a in agents(state, timeout=2.0) or [] if a.get("alive")}
        if names <= alive:
            return
        _exited(state, ["server", *(f"agent:{name}" for name in names)])
        time.sleep(0.2)
    raise ClusterError(f"agents not alive after {timeout:.0f}s: "
                       f"{', '.join(sorted(names - alive))}")


def agents(state: RigState, timeout: float = 2.0) -> list[dict[str, Any]] | None:
    """The server's agent list; None when it does not answer."""
    try:
        response = httpx.get(f"{state.api_url}/v2.0/agents", timeout=timeout)
        listed = response.json().get("agents") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return listed if isinstance(listed, list) else None


def _children(pid: int) -> list[int]:
    """The server supervisor's workers right now (they are respawned, so not recorded)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def down(state: RigState) -> list[str]:
    """Stop every recorded process, newest first, remove hosts and the rig dir.

    Returns what could not be removed (empty: nothing of the rig is left)."""
    for process in reversed(state.processes):
        if process.name.startswith("ovs:"):
            continue  # after the agents, with the hosts
        workers = [Process(f"{process.name}:worker", pid, process.program)
                   for pid in _children(process.pid)] if running(process) else []
        stop(process, timeout=30)
        for worker in workers:
            stop(worker, timeout=10)
    left = rig_hosts.remove_hosts(state)
    left += [f"process {p.name} (pid {p.pid})" for p in state.processes if running(p)]
    run_dir = Path(state.dir).parent
    unpoint(run_dir, state)
    if not left:
        shutil.rmtree(state.dir, ignore_errors=True)
    else:
        state.status = "down-incomplete"
        state.save()
    return left


def status(state: RigState) -> tuple[list[tuple[str, str]], bool]:
    """(component, what it is doing) rows, and whether everything is up."""
    rows: list[tuple[str, str]] = []
    ok = True
    for process in state.processes:
        if process.name.startswith(("ovs:", "agent:", "rabbitmq-launcher")):
            continue
        alive = running(process)
        ok &= alive
        detail = {"postgresql": state.database_url, "mariadb": state.database_url,
                  "rabbitmq": state.bus_url, "server": f"{state.api_url} "
                  f"({len(_children(process.pid))}/{state.workers} workers)"}.get(
                      process.name, "")
        rows.append((process.name, f"{'running' if alive else 'DEAD'} pid {process.pid} "
                                   f"{_redact(detail)}".rstrip()))
    if state.database == "external":
        rows.append(("database", f"external {_redact(state.database_url)}"))
    if state.bus == "external":
        rows.append(("rabbitmq", f"external {_redact(state.bus_url)}"))
    order = ["database", "postgresql", "mariadb", "rabbitmq", "server"]
    rows.sort(key=lambda row: order.index(row[0]) if row[0] in order else len(order))
    listed = {a["host"]: a for a in agents(state) or []}
    for host in state.hosts:
        rows_ok, text = _host_row(state, host, listed.get(host.name))
        ok &= rows_ok
        rows.append((host.name, text))
    return rows, ok


def _host_row(state: RigState, host: Host, agent: dict[str, Any] | None) -> tuple[bool, str]:
    process = state.process(f"agent:{host.name}")
    ovs = all(running(p) for p in state.processes if p.name.startswith(f"ovs:{host.name}:"))
    proc_ok = process is not None and running(process)
    alive = bool(agent and agent.get("alive"))
    beat = agent.get("heartbeat_timestamp") if agent else None
    text = (f"agent {'running' if proc_ok else 'DEAD'}"
            f"{f' pid {process.pid}' if process else ''}, "
            f"{'alive' if alive else 'NOT alive'}, last heartbeat {beat or 'never'}; "
            f"ovs {'running' if ovs else 'DEAD'}; netns {host.netns}; local_ip {host.local_ip}")
    return proc_ok and alive and ovs, text


def _redact(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, where = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{where}"

