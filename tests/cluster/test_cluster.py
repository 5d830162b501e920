"""`vifwire cluster up/status/down` and `vifwire boot` on it, for real.

One rig for the module: 2 hosts (each a namespace with its own OVS and a
`vifwire agent` process), a private PostgreSQL, a private RabbitMQ node and
`vifwire server --workers 2`. The tests run in file order: status, boots,
then `down`, after which nothing the state file named may be left: no pid
alive, no namespace, no veth, no rig dir.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from vifwire.cluster.state import STATE_FILE, RigState, current_link, stop
from vifwire.procs import process_alive

from .helpers import free_port, netns_exists, root_link_exists, traversable_dir, vifwire

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, OVS)")


def tunnels_available() -> bool:
    """The agents get `local_ip` (the tunnel branch) only if the config file can say it."""
    from vifwire.cli.config import KEYS

    return any(field == "local_ip" for field, _ in KEYS.values())


@pytest.fixture(scope="module")
def rig() -> Iterator[tuple[Path, RigState]]:
    run_dir = traversable_dir()
    done = vifwire(run_dir, "cluster", "up", "--hosts", "2", "--workers", "2",
                   "--api-port", str(free_port()), "--heartbeat", "1")
    state_path = current_link(run_dir) / STATE_FILE
    state = RigState.load(state_path) if state_path.exists() else None
    try:
        assert done.returncode == 0, done.stderr
        assert state is not None
        yield run_dir, state
    finally:
        if state is not None and Path(state.dir).exists():
            vifwire(run_dir, "cluster", "down")  # also when a test failed midway
        shutil.rmtree(run_dir, ignore_errors=True)


def test_up_records_everything_and_status_shows_heartbeats(rig: tuple[Path, RigState]) -> None:
    run_dir, state = rig
    assert state.status == "up" and len(state.hosts) == 2
    names = {p.name for p in state.processes}
    assert {"postgresql", "rabbitmq", "server"} <= names
    for host in state.hosts:
        assert {f"agent:{host.name}", f"ovs:{host.name}:ovsdb-server",
                f"ovs:{host.name}:ovs-vswitchd"} <= names
        assert netns_exists(host.netns)
    assert all(process_alive(p.pid) for p in state.processes)
    assert state.database_url.startswith("postgresql+psycopg://root@127.0.0.1:")
    assert ":5432/" not in state.database_url and ":5672/" not in state.bus_url  # private

    done = vifwire(run_dir, "cluster", "status")
    assert done.returncode == 0, done.stdout + done.stderr
    for host in state.hosts:
        line = next(line for line in done.stdout.splitlines() if line.startswith(host.name))
        assert "alive, last heartbeat 20" in line and "NOT" not in line
    assert "(2/2 workers)" in done.stdout


def boot(run_dir: Path, *args: str) -> dict[str, Any]:
    done = vifwire(run_dir, "boot", "--json", "--timeout", "60", *args)
    assert done.stdout, done.stderr
    summary: dict[str, Any] = orjson.loads(done.stdout)
    return summary


def test_boot_spreads_vms_over_the_hosts(rig: tuple[Path, RigState]) -> None:
    run_dir, state = rig
    check = [] if tunnels_available() else ["--no-connectivity"]
    summary = boot(run_dir, "--count", "4", *check)
    assert summary["plugged"] == 4, summary["error"]
    assert summary["hosts"] == {h.name: 2 for h in state.hosts}
    bound = {r["port_id"]: r["host"] for r in summary["records"] if not r["probe"]}
    assert sorted(bound.values()) == sorted(h.name for h in state.hosts for _ in range(2))
    if check:
        pytest.skip("no tunnels in this vifwire (tunnel branch not merged): "
                    "spread and binding checked, cross-host ping not")
    # Round-robin puts ring neighbours on different hosts: every pair crosses.
    assert summary["cross_host_pairs"] == 4, summary["connectivity"]
    assert summary["ok"], summary["connectivity"]


def test_boot_on_one_host(rig: tuple[Path, RigState]) -> None:
    run_dir, state = rig
    host = state.hosts[1]
    summary = boot(run_dir, "--count", "3", "--host", host.name)
    assert summary["ok"], summary
    assert summary["hosts"] == {host.name: 3} and summary["cross_host_pairs"] == 0

    done = vifwire(run_dir, "boot", "--count", "1", "--host", "no-such-host")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: host 'no-such-host'")


def test_database_restart_503_then_resumes(rig: tuple[Path, RigState]) -> None:
    """PostgreSQL down: the API answers 503 NeutronError; back: it serves again by itself."""
    run_dir, state = rig
    postgresql = state.process("postgresql")
    assert postgresql is not None
    stop(postgresql)
    with httpx.Client(base_url=state.api_url, timeout=10) as api:
        down = api.get("/v2.0/networks")
        assert down.status_code == 503
        assert down.json()["NeutronError"]["type"] == "ServiceUnavailable"
        assert api.post("/v2.0/networks", json={"network": {"name": "x"}}).status_code == 503

        done = vifwire(run_dir, "cluster", "restart", "postgresql")
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        while api.get("/v2.0/networks").status_code != 200:
            assert time.monotonic() < deadline, "the API did not come back after the restart"
            time.sleep(0.2)
    summary = boot(run_dir, "--count", "2", "--host", state.hosts[0].name)
    assert summary["ok"], summary


def test_status_names_a_dead_agent(rig: tuple[Path, RigState]) -> None:
    run_dir, state = rig
    host = state.hosts[0]
    agent = state.process(f"agent:{host.name}")
    assert agent is not None
    os.kill(agent.pid, signal.SIGKILL)
    while process_alive(agent.pid):
        time.sleep(0.05)
    done = vifwire(run_dir, "cluster", "status")
    assert done.returncode == 3
    line = next(line for line in done.stdout.splitlines() if line.startswith(host.name))
    assert line.startswith(f"{host.name}  agent DEAD pid {agent.pid}")


def test_down_leaves_nothing(rig: tuple[Path, RigState]) -> None:
    run_dir, _ = rig
    state = RigState.load(current_link(run_dir) / STATE_FILE)  # restarts changed pids
    kept = boot(run_dir, "--count", "2", "--keep", "--host", state.hosts[1].name)
    vm_namespaces = [r["namespace"] for r in kept["records"]]
    assert kept["plugged"] == 2 and all(netns_exists(n) for n in vm_namespaces)
    done = vifwire(run_dir, "cluster", "down")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in state.processes if process_alive(p.pid)] == []
    assert [n for n in [*state.netns, *vm_namespaces] if netns_exists(n)] == []
    assert [link for link in state.links if root_link_exists(link)] == []
    assert not Path(state.dir).exists() and not current_link(run_dir).exists()
    again = vifwire(run_dir, "cluster", "status")
    assert again.returncode == 1 and "no cluster" in again.stderr
