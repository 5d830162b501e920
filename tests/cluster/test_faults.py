"""Faults at `vifwire cluster up`: one line, a non-zero exit, nothing left behind."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from vifwire.cluster import hosts
from vifwire.cluster.rig import down
from vifwire.cluster.state import RigState, new_id
from vifwire.procs import process_alive

from .helpers import free_port, netns_exists, vifwire

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, OVS)")


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(("flag", "url", "says"), [
    ("--bus-url", "amqp://guest:guest@127.0.0.1:{port}/", "RabbitMQ at amqp://***@127.0.0.1:"),
    ("--database-url", "postgresql+psycopg://root@127.0.0.1:{port}/x", "database postgresql"),
])
def test_unreachable_broker_or_database(tmp_path: Path, flag: str, url: str, says: str) -> None:
    done = vifwire(tmp_path, "cluster", "up", "--hosts", "1", flag, url.format(port=free_port()),
                   "--api-port", str(free_port()))
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert line.startswith(f"error: {says}") and "not reachable" in line
    assert list(tmp_path.iterdir()) == []


def test_api_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = vifwire(tmp_path, "cluster", "up", "--hosts", "1",
                       "--api-port", str(busy.getsockname()[1]))
    assert done.returncode == 1
    assert "is in use" in one_error_line(done.stderr)


def test_down_after_a_start_that_died_midway(tmp_path: Path) -> None:
    """Names recorded but only half created (an `up` killed while making hosts): down
    removes what exists and does not trip over what does not."""
    state = RigState(id=new_id(), dir=str(tmp_path / "rig"))
    hosts.plan_hosts(state, 2)
    hosts.add_netns(state, state.underlay_netns)
    hosts.add_netns(state, state.hosts[0].netns)
    runtime = hosts.ovs_runtime(state.hosts[0])
    try:
        runtime.start()
    finally:
        hosts.record_ovs(state, state.hosts[0], runtime, threading.Lock())
    ovs = [p for p in state.processes if p.name.startswith("ovs:")]
    assert len(ovs) == 2 and all(process_alive(p.pid) for p in ovs)

    reloaded = RigState.load(state.path)  # what `down` of another process would read
    assert down(reloaded) == []
    assert not any(process_alive(p.pid) for p in ovs)
    assert not any(netns_exists(name) for name in state.netns)
    assert not Path(state.dir).exists()
