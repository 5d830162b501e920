"""Fixtures: one private OVS per test module (unique run dir and bridge name),
a real LocalBus with the ServerPeer on topic "server", agents and VMs that are
torn down by the names they were created with."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from vifwire.agent.service import OvsAgent
from vifwire.bus.base import SERVER_TOPIC
from vifwire.bus.local import LocalBus
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import OvsSettings, Settings
from vifwire.trace import Stage, Tracer

from .peers import ServerPeer, Vm, sh

log = logging.getLogger("tests.agent")


@pytest.fixture(scope="module")
def ovs() -> Iterator[OvsRuntime]:
    # A netdev datapath creates "ovs-netdev" and bridge tap devices in its
    # namespace, so the test switch gets its own to never collide with others.
    short = uuid.uuid4().hex[:5]
    run_dir = Path(f"/tmp/vw-agent-{os.getpid()}-{short}")
    netns = f"vwa-ovs-{short}"
    runtime = OvsRuntime(OvsSettings(run_dir=run_dir / "ovs", integration_bridge=f"br-t{short}"),
                         netns=netns)
    sh("ip", "netns", "add", netns)
    try:
        runtime.start()
        yield runtime
    finally:
        runtime.destroy()
        sh("ip", "netns", "del", netns, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(params=[True, False], ids=["fast", "plain"])
def fast(request: pytest.FixtureRequest) -> bool:
    """Both OVSDB paths: the speed-ups on (default) and the plain library path."""
    return bool(request.param)


@pytest.fixture
def ovs_settings(ovs: OvsRuntime, fast: bool) -> OvsSettings:
    return replace(ovs.settings, raw_rows=fast)


@pytest.fixture
async def bus() -> AsyncIterator[LocalBus]:
    b = LocalBus()
    await b.start()
    yield b
    await b.stop()


@pytest.fixture
async def server(bus: LocalBus) -> ServerPeer:
    peer = ServerPeer()
    await bus.serve(SERVER_TOPIC, peer)
    return peer


@pytest.fixture
def settings(ovs: OvsRuntime) -> Settings:
    return Settings(run_dir=ovs.run_dir.parent, host=f"vwa-host-{os.getpid()}",
                    agent_heartbeat_s=0.2)


@pytest.fixture
async def make_agent(settings: Settings, bus: LocalBus,
                     ovs_settings: OvsSettings) -> AsyncIterator[Callable[..., OvsAgent]]:
    made: list[OvsAgent] = []

    def make(**kwargs: object) -> OvsAgent:
        agent = OvsAgent(settings, bus, Tracer("agent", None), ovs=ovs_settings, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.stop()


@pytest.fixture
def vms(ovs: OvsRuntime) -> Iterator[Callable[..., Vm]]:
    made: list[Vm] = []

    def make(port_id: str, ip: str, mac: str, *, plug: bool = True, prefix: str = "") -> Vm:
        vm = Vm(ovs, prefix + uuid.uuid4().hex[:6 - len(prefix) // 2], port_id, mac, ip)
        made.append(vm)
        vm.create()
        if plug:
            vm.plug()
        return vm

    try:
        yield make
    finally:
        for vm in made:
            vm.destroy()


def log_latency(agent: OvsAgent, vms: list[Vm]) -> None:
    """Log plugged->seen->wired->up per VM (ms), from the agent's trace events."""
    events = agent.tracer.events
    for vm in vms:
        t = {e["stage"]: e["t"] for e in events if e["port"] == vm.port_id}
        if Stage.WIRED in t and Stage.SEEN in t:
            parts = [f"seen->wired {1000 * (t[Stage.WIRED] - t[Stage.SEEN]):.1f} ms"]
            if vm.plugged_at is not None:
                parts.insert(0, f"plug->seen {1000 * (t[Stage.SEEN] - vm.plugged_at):.1f} ms")
            if Stage.UP in t:
                parts.append(f"wired->up {1000 * (t[Stage.UP] - t[Stage.WIRED]):.1f} ms")
            log.warning("latency %s: %s", vm.port_id, ", ".join(parts))
