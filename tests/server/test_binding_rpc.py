"""Binding, the agent RPC endpoint, and what the agent hears over the bus."""

from __future__ import annotations

import asyncio
from typing import Any

from vifwire.bus.base import agent_topic
from vifwire.profile.sql import install_sql_probe
from vifwire.trace import Stage

from .helpers import HOST, FakeAgent, Stack

OVS_DETAILS = {"port_filter": True, "connectivity": "l2", "ovs_hybrid_plug": False,
               "datapath_type": "netdev", "bridge_name": "br-int"}


async def _network(stack: Stack) -> tuple[str, str]:
    net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
    sub = (await stack.client.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}})).json()["subnet"]
    return net["id"], sub["id"]


async def _port(stack: Stack, net_id: str, **body: Any) -> dict[str, Any]:
    r = await stack.client.post("/v2.0/ports", json={"port": {"network_id": net_id, **body}})
    assert r.status_code == 201, r.text
    return r.json()["port"]


async def _settle() -> None:
    for _ in range(5):  # LocalBus delivers casts as tasks
        await asyncio.sleep(0)


async def test_bind_without_agent_fails(stack: Stack) -> None:
    net_id, _ = await _network(stack)
    port = await _port(stack, net_id, **{"binding:host_id": HOST})
    assert port["binding:vif_type"] == "binding_failed"
    assert port["binding:vif_details"] == {}


async def test_bind_with_live_agent(stack: Stack, agent: FakeAgent) -> None:
    await stack.register_agent()
    net_id, sub_id = await _network(stack)
    port = await _port(stack, net_id, device_id="vm-1", device_owner="compute:nova")
    assert port["binding:vif_type"] == "unbound"
    r = await stack.client.put(f"/v2.0/ports/{port['id']}",
                               json={"port": {"binding:host_id": HOST}})
    bound = r.json()["port"]
    assert bound["binding:vif_type"] == "ovs"
    assert bound["binding:vif_details"] == OVS_DETAILS
    await _settle()
    assert len(agent.bound) == 1
    details = agent.bound[0]
    net = (await stack.client.get(f"/v2.0/networks/{net_id}")).json()["network"]
    assert details["port_id"] == port["id"]
    assert details["host"] == HOST
    assert details["network_type"] == "vxlan"
    assert details["segmentation_id"] == net["provider:segmentation_id"]
    assert details["mtu"] == 1450
    assert details["mac_address"] == port["mac_address"]
    assert details["fixed_ips"] == port["fixed_ips"] and details["fixed_ips"][0]["subnet_id"] \
        == sub_id
    stages = [e["stage"] for e in stack.tracer.events if e["port"] == port["id"]]
    assert stages == [Stage.CREATED, Stage.BOUND, Stage.PUSHED]

    host_ports = await stack.rpc("get_host_ports", host=HOST)
    assert [p["port_id"] for p in host_ports] == [port["id"]]
    assert await stack.rpc("get_host_ports", host="elsewhere") == []
    one = await stack.rpc("get_port_details", host=HOST, port_id=port["id"])
    assert one["port_id"] == port["id"]
    assert await stack.rpc("get_port_details", host="elsewhere", port_id=port["id"]) is None

    moved = await stack.client.put(f"/v2.0/ports/{port['id']}",
                                   json={"port": {"binding:host_id": ""}})
    assert moved.json()["port"]["binding:vif_type"] == "unbound"
    await _settle()
    assert agent.unbound == [port["id"]]


async def test_delete_bound_port_unbinds(stack: Stack, agent: FakeAgent) -> None:
    await stack.register_agent()
    net_id, _ = await _network(stack)
    port = await _port(stack, net_id, **{"binding:host_id": HOST})
    assert port["binding:vif_type"] == "ovs"
    assert (await stack.client.delete(f"/v2.0/ports/{port['id']}")).status_code == 204
    await _settle()
    assert agent.unbound == [port["id"]]


async def test_bind_with_no_endpoint_still_succeeds(stack: Stack) -> None:
    await stack.register_agent("compute-2")  # heartbeat but no topic served
    net_id, _ = await _network(stack)
    port = await _port(stack, net_id, **{"binding:host_id": "compute-2"})
    assert port["binding:vif_type"] == "ovs"
    stages = [e["stage"] for e in stack.tracer.events if e["port"] == port["id"]]
    assert stages == [Stage.CREATED, Stage.BOUND]


async def test_ports_up_and_down(stack: Stack, agent: FakeAgent) -> None:
    await stack.register_agent()
    net_id, _ = await _network(stack)
    port = await _port(stack, net_id, **{"binding:host_id": HOST})
    other = await _port(stack, net_id)
    up = await stack.rpc("ports_up", host=HOST, port_ids=[port["id"], other["id"]])
    assert up == [port["id"]]  # the unbound port is not this host's
    shown = (await stack.client.get(f"/v2.0/ports/{port['id']}")).json()["port"]
    assert shown["status"] == "ACTIVE"
    assert (await stack.client.get(f"/v2.0/ports/{other['id']}")).json()["port"]["status"] \
        == "DOWN"
    assert await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]]) == [port["id"]]
    actives = [e for e in stack.tracer.events if e["stage"] == Stage.ACTIVE]
    assert [e["port"] for e in actives] == [port["id"]]
    down = await stack.rpc("ports_down", host=HOST, port_ids=[port["id"]])
    assert down == [port["id"]]
    assert (await stack.client.get(f"/v2.0/ports/{port['id']}")).json()["port"]["status"] \
        == "DOWN"


async def test_agents_api(stack: Stack) -> None:
    await stack.register_agent()
    agents = (await stack.client.get("/v2.0/agents")).json()["agents"]
    assert len(agents) == 1
    a = agents[0]
    assert a["agent_type"] == "Open vSwitch agent"
    assert a["binary"] == "neutron-openvswitch-agent"
    assert a["host"] == HOST and a["alive"] is True and a["admin_state_up"] is True
    assert a["availability_zone"] is None
    assert a["configurations"] == {"bridge_mappings": {}}
    assert len(a["heartbeat_timestamp"]) == 19 and a["heartbeat_timestamp"][10] == " "
    await stack.register_agent()  # heartbeat again: still one row
    assert len((await stack.client.get(f"/v2.0/agents?host={HOST}")).json()["agents"]) == 1
    upd = await stack.client.put(f"/v2.0/agents/{a['id']}", json={"agent": {
        "admin_state_up": False, "description": "maint"}})
    assert upd.json()["agent"]["description"] == "maint"
    assert upd.json()["agent"]["admin_state_up"] is False
    bad = await stack.client.put(f"/v2.0/agents/{a['id']}", json={"agent": {"host": "x"}})
    assert bad.status_code == 400
    assert (await stack.client.post("/v2.0/agents", json={"agent": {}})).status_code == 405
    assert (await stack.client.delete(f"/v2.0/agents/{a['id']}")).status_code == 204
    missing = await stack.client.get(f"/v2.0/agents/{a['id']}")
    assert missing.json()["NeutronError"]["type"] == "AgentNotFound"


async def test_dead_agent_means_binding_failed(stack: Stack) -> None:
    await stack.bus.serve(agent_topic(HOST), FakeAgent())
    settings = stack.settings
    await stack.register_agent()
    # Age the heartbeat past agent_down_time_s.
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from vifwire.db.schema import agents

    engine = stack.app.state.services.context.engine
    with engine.begin() as conn:
        conn.execute(update(agents).values(heartbeat_timestamp=datetime.now(UTC).replace(
            tzinfo=None) - timedelta(seconds=settings.agent_down_time_s + 1)))
    assert (await stack.client.get("/v2.0/agents")).json()["agents"][0]["alive"] is False
    net_id, _ = await _network(stack)
    port = await _port(stack, net_id, **{"binding:host_id": HOST})
    assert port["binding:vif_type"] == "binding_failed"


async def test_admin_down_or_deleted_agent_stops_binding_at_once(stack: Stack) -> None:
    """Liveness is remembered for a moment per host: changes made through the API
    must still take effect on the very next bind."""
    await stack.register_agent()
    net_id, _ = await _network(stack)
    first = await _port(stack, net_id, **{"binding:host_id": HOST})
    assert first["binding:vif_type"] == "ovs"  # the yes is now remembered
    agent_id = (await stack.client.get("/v2.0/agents")).json()["agents"][0]["id"]
    await stack.client.put(f"/v2.0/agents/{agent_id}", json={"agent": {"admin_state_up": False}})
    down = await _port(stack, net_id, **{"binding:host_id": HOST})
    assert down["binding:vif_type"] == "binding_failed"
    await stack.client.put(f"/v2.0/agents/{agent_id}", json={"agent": {"admin_state_up": True}})
    assert (await _port(stack, net_id, **{"binding:host_id": HOST}))["binding:vif_type"] == "ovs"
    assert (await stack.client.delete(f"/v2.0/agents/{agent_id}")).status_code == 204
    gone = await _port(stack, net_id, **{"binding:host_id": HOST})
    assert gone["binding:vif_type"] == "binding_failed"


async def test_full_sync_answers_every_port_in_statements_that_do_not_grow_with_ports(
        stack: Stack, agent: FakeAgent) -> None:
    """An agent's start asks for every port of its host: each with its own network's
    segment and its own addresses, and not two queries per port."""
    await stack.register_agent()
    nets = [await _network(stack) for _ in range(2)]
    made: list[dict[str, Any]] = []

    async def statements_for_sync() -> tuple[int, list[dict[str, Any]]]:
        await stack.app.state.services.context.firewalls.settled()  # member rounds: not ours
        probe = install_sql_probe(stack.app.state.services.context.engine)
        try:
            listed = await stack.rpc("get_host_ports", host=HOST)
            return probe.snapshot()["statements"], listed
        finally:
            probe.remove()

    counts = []
    for batch in range(2):
        for i in range(3 if batch == 0 else 12):
            net_id, sub_id = nets[i % 2]
            ips = [{"subnet_id": sub_id}] * (1 + i % 2)  # some ports with two addresses
            made.append(await _port(stack, net_id, fixed_ips=ips,
                                    **{"binding:host_id": HOST}))
        count, listed = await statements_for_sync()
        counts.append(count)
        by_id = {p["port_id"]: p for p in listed}
        assert set(by_id) == {p["id"] for p in made}
        for port in made:
            one = await stack.rpc("get_port_details", host=HOST, port_id=port["id"])
            assert by_id[port["id"]] == one
            assert by_id[port["id"]]["fixed_ips"] == port["fixed_ips"]
    assert counts[0] == counts[1], counts  # 3 ports or 15, the same statements
