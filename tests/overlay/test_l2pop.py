"""The server's l2population, seen from the agents' topics (no OVS needed).

Four hosts' agents are recorders on the real in-process bus; three report a
tunnel address, one does not. Ports go ACTIVE, DOWN, move and are deleted
through the agent RPC and the API, and each host must hear exactly about the
remote ports of the networks it has ports on.
"""

from __future__ import annotations

from typing import Any

from agent.peers import wait_for
from vifwire.bus.base import SERVER_TOPIC, agent_topic

from .conftest import Server


class Recorder:
    """One host's agent topic: what the server cast to it, in order."""

    def __init__(self) -> None:
        self.added: list[dict[str, Any]] = []
        self.removed: list[dict[str, Any]] = []
        self.marks = 0

    async def port_bound(self, port: dict[str, Any]) -> None:
        return None

    async def port_unbound(self, port_id: str) -> None:
        return None

    async def fdb_add(self, entries: list[dict[str, Any]]) -> None:
        self.added += entries

    async def fdb_remove(self, entries: list[dict[str, Any]]) -> None:
        self.removed += entries

    async def mark(self) -> None:
        self.marks += 1

    def take(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        taken = self.added, self.removed
        self.added, self.removed = [], []
        return taken


HOSTS = {"h1": "198.18.0.1", "h2": "198.18.0.2", "h3": "198.18.0.3", "h4": None}


async def settle(server: Server, agents: dict[str, Recorder]) -> None:
    """Casts on a topic arrive in order: once a mark cast now has arrived
    everywhere, so has everything the server cast before it."""
    want = {h: r.marks + 1 for h, r in agents.items()}
    for host in agents:
        await server.bus.cast(agent_topic(host), "mark")
    await wait_for(lambda: all(r.marks == want[h] for h, r in agents.items()), what="marks")


def added(agents: dict[str, Recorder]) -> dict[str, set[tuple[str, str, str]]]:
    """host -> {("+" or "-", port id, host of the port)} cast since the last look."""
    result = {}
    for host, recorder in agents.items():
        adds, removes = recorder.take()
        result[host] = {("+", e["port_id"], e["host"]) for e in adds} | \
            {("-", e["port_id"], e["host"]) for e in removes}
    return result


async def test_l2pop_pushes_to_the_other_hosts_of_a_network(server: Server) -> None:
    agents = {host: Recorder() for host in HOSTS}
    for host, ip in HOSTS.items():
        await server.bus.serve(agent_topic(host), agents[host])
        await server.bus.call(SERVER_TOPIC, "report_state", agent={
            "host": host, "agent_type": "Open vSwitch agent",
            "binary": "neutron-openvswitch-agent", "topic": "N/A", "start_flag": True,
            "configurations": {"tunnel_types": ["vxlan"], **({"tunneling_ip": ip} if ip else {})}})
    blue = await server.network("blue", "10.5.0.0/24")
    red = await server.network("red", "10.6.0.0/24")
    p1 = await server.port(blue, "h1", "10.5.0.11")
    p2 = await server.port(blue, "h2", "10.5.0.12")
    await server.port(red, "h3", "10.6.0.13")
    p4 = await server.port(blue, "h4", "10.5.0.14")

    async def rpc(method: str, **kwargs: Any) -> Any:
        result = await server.bus.call(SERVER_TOPIC, method, **kwargs)
        await settle(server, agents)
        return result

    # p1 up on h1: h2 (blue, tunnelling) hears; h3 (red only) and h4 (no tunnel) do not.
    await rpc("ports_up", host="h1", port_ids=[p1["id"]])
    assert added(agents) == {"h1": set(), "h2": {("+", p1["id"], "h1")}, "h3": set(),
                             "h4": set()}
    # p2 up on h2: h1 hears of it, and h2 (its first ACTIVE port on blue) of p1.
    await rpc("ports_up", host="h2", port_ids=[p2["id"]])
    assert added(agents) == {"h1": {("+", p2["id"], "h2")}, "h2": {("+", p1["id"], "h1")},
                             "h3": set(), "h4": set()}
    # A host without a tunnel address announces nothing.
    await rpc("ports_up", host="h4", port_ids=[p4["id"]])
    assert added(agents) == {h: set() for h in HOSTS}

    # The full sync: what each host would have been told.
    fdb = await rpc("get_host_fdb", host="h1")
    assert fdb == [{"port_id": p2["id"], "network_id": blue["id"], "network_type": "vxlan",
                    "segmentation_id": blue["provider:segmentation_id"],
                    "mac_address": p2["mac_address"], "ip_addresses": ["10.5.0.12"],
                    "host": "h2", "local_ip": "198.18.0.2"}]
    assert await rpc("get_host_fdb", host="h3") == []
    assert await rpc("get_host_fdb", host="h4") == []

    # p1 moves to h3: withdrawn from h1's place, announced at h3 once ACTIVE there.
    answer = await server.api.put(f"/v2.0/ports/{p1['id']}",
                                  json={"port": {"binding:host_id": "h3"}})
    assert answer.status_code == 200, answer.text
    await settle(server, agents)
    assert added(agents) == {"h1": set(), "h2": {("-", p1["id"], "h1")},
                             "h3": {("-", p1["id"], "h1")}, "h4": set()}
    await rpc("ports_up", host="h3", port_ids=[p1["id"]])
    assert added(agents) == {"h1": set(), "h2": {("+", p1["id"], "h3")},
                             "h3": {("+", p2["id"], "h2")}, "h4": set()}

    # p2 DOWN, then deleted: withdrawn from h3, the only other blue host with a tunnel.
    await rpc("ports_down", host="h2", port_ids=[p2["id"]])
    assert added(agents) == {"h1": set(), "h2": set(), "h3": {("-", p2["id"], "h2")},
                             "h4": set()}
    assert (await server.api.delete(f"/v2.0/ports/{p2['id']}")).status_code == 204
    await settle(server, agents)
    assert added(agents) == {"h1": set(), "h2": set(), "h3": {("-", p2["id"], "h2")},
                             "h4": set()}
    # p1 (ACTIVE on h3) deleted: nobody with a tunnel is left on blue but h3 itself.
    assert (await server.api.delete(f"/v2.0/ports/{p1['id']}")).status_code == 204
    await settle(server, agents)
    assert added(agents) == {h: set() for h in HOSTS}
