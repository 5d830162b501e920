"""An agent that cannot start lets go of what it took (real OVS, real LocalBus)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from vifwire.agent.service import OvsAgent
from vifwire.bus.local import LocalBus
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import Settings
from vifwire.trace import Tracer


class UnreachableBus(LocalBus):
    """As a broker that is down would: the agent cannot listen on its topic."""

    async def serve(self, topic: str, endpoint: Any) -> None:
        raise ConnectionError(f"cannot listen on {topic}: broker unreachable")


async def test_a_bus_that_cannot_serve_fails_the_start_and_releases_ovsdb(
        settings: Settings, ovs: OvsRuntime) -> None:
    bus = UnreachableBus()
    await bus.start()
    threads_before = set(threading.enumerate())
    agent = OvsAgent(settings, bus, Tracer("agent", None), ovs=ovs.settings)
    try:
        with pytest.raises(ConnectionError, match="broker unreachable"):
            await agent.start()
        assert agent._bridge._api is None  # the OVSDB connection is closed
        new = [t.name for t in threading.enumerate()
               if t not in threads_before and not t.name.startswith("asyncio")]
        # Its IDL thread is gone (the loop's executor and asyncio's child
        # watcher, "asyncio-waitpid-N" for ovs-ofctl, may stay a moment).
        assert new == []
    finally:
        await agent.stop()
        await bus.stop()


async def test_a_stopped_agent_leaves_no_control_socket_of_its_flow_watch(
        settings: Settings, ovs: OvsRuntime, bus: LocalBus) -> None:
    """The watch is an `ovs-ofctl monitor`: stopped with SIGTERM, it removes its
    ovs-ofctl.<pid>.ctl from the run dir (a SIGKILL would leave one per start)."""
    before = set(ovs.run_dir.glob("ovs-ofctl.*.ctl"))
    agent = OvsAgent(settings, bus, Tracer("agent", None), ovs=ovs.settings)
    await agent.start()
    assert set(ovs.run_dir.glob("ovs-ofctl.*.ctl")) - before  # the watch is running
    await agent.stop()
    assert set(ovs.run_dir.glob("ovs-ofctl.*.ctl")) - before == set()
