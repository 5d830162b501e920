"""The real OVS agent over RabbitMQ: a bind whose cast died with the broker is
found by the full sync the agent runs when its bus reconnects."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from agent.conftest import ovs, vms  # noqa: F401 - fixtures: a private OVS, VMs
from agent.peers import ServerPeer, Vm, port, wait_for
from vifwire.agent.model import DEAD_VLAN
from vifwire.agent.service import OvsAgent
from vifwire.bus.amqp import AmqpBus
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import Settings
from vifwire.trace import Tracer

pytestmark = pytest.mark.ovs


async def test_agent_resyncs_after_a_broker_restart(
        private_broker, ovs: OvsRuntime, vms: Callable[..., Vm]) -> None:  # noqa: F811
    settings = Settings(run_dir=ovs.run_dir.parent, host=f"vwb-host-{os.getpid()}",
                        agent_heartbeat_s=0.5)
    server_bus = AmqpBus(private_broker.url, reconnect_interval=0.5, publish_timeout=60)
    agent_bus = AmqpBus(private_broker.url, reconnect_interval=0.5, publish_timeout=60)
    await server_bus.start()
    await agent_bus.start()
    server = ServerPeer()
    await server_bus.serve("server", server)
    agent = OvsAgent(settings, agent_bus, Tracer("agent", None), ovs=ovs.settings,
                     rpc_timeout=5)
    try:
        await agent.start()
        p = port(f"b0d1e5a2-0000-4000-8000-{os.getpid():012d}", "net-resync", settings.host,
                 mac="fa:16:3e:00:00:21")
        vm = vms(p["port_id"], "10.0.0.21", p["mac_address"])  # plugged before any bind
        await wait_for(lambda: p["port_id"] in server.detail_lookups, what="lookup")
        await wait_for(lambda: vm.tag_in_ovsdb() == DEAD_VLAN, what="dead VLAN")
        await asyncio.to_thread(private_broker.kill)
        server.ports[p["port_id"]] = p  # bound while the broker is down: no cast reached it
        await asyncio.to_thread(private_broker.start)
        await wait_for(lambda: p["port_id"] in server.reported_up(), timeout=60,
                       what="ports_up after the resync")
        assert vm.tag_in_ovsdb() not in (None, DEAD_VLAN)
        assert server.ports[p["port_id"]]["status"] == "ACTIVE"
    finally:
        await agent.stop()
        await agent_bus.stop()
        await server_bus.stop()
