"""Security groups as the agents hear them (issue 10 item 3): each port's firewall
pushed with its details, and the casts after a port, rule or group changes, seen
by recorders on the real in-process bus, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from vifwire.bus.base import agent_topic

from .helpers import Stack

RULES = "/v2.0/security-group-rules"
HOSTS = ("h1", "h2")


class Recorder:
    """One host's agent topic: what the server cast to it, in order. On
    `sg_members_changed` it reads the group's list, as the agent does."""

    def __init__(self, stack: Stack, host: str) -> None:
        self.stack, self.host = stack, host
        self.bound: list[dict[str, Any]] = []
        self.walls: list[dict[str, Any]] = []  # each firewall_changed's firewalls, flat
        self.members: dict[str, dict[str, list[str]]] = {}  # the last list per group
        self.member_casts = 0
        self.marks = 0
        # The local bus starts each cast's handler in order, as a task: a mark cast
        # after sg_members_changed could finish while that one still reads. The read
        # holds this lock from its first step, and the mark waits for it.
        self._reading = asyncio.Lock()

    async def port_bound(self, port: dict[str, Any]) -> None:
        self.bound.append(port)

    async def port_unbound(self, port_id: str) -> None:
        return None

    async def firewall_changed(self, firewalls: list[dict[str, Any]]) -> None:
        self.walls += firewalls

    async def sg_members_changed(self, group_id: str, **extra: Any) -> None:
        assert not extra  # the cast names the group only: the list is read
        async with self._reading:
            self.members[group_id] = await self.stack.rpc("get_group_members",
                                                          host=self.host, group_id=group_id)
            self.member_casts += 1

    async def mark(self) -> None:
        async with self._reading:  # what was cast before the mark is done first
            self.marks += 1

    def addresses(self, group_id: str) -> set[str]:
        lists = self.members.get(group_id, {})
        return {a for found in lists.values() for a in found}


async def _agents(stack: Stack) -> dict[str, Recorder]:
    agents = {h: Recorder(stack, h) for h in HOSTS}
    for host, recorder in agents.items():
        await stack.bus.serve(agent_topic(host), recorder)
        await stack.register_agent(host)
    return agents


async def _settle(stack: Stack, agents: dict[str, Recorder]) -> None:
    """Once the member rounds asked for are sent (they wait `sg_members_delay_s`),
    casts on a topic arrive in order: once a mark cast now has arrived
    everywhere, so has everything cast before it."""
    await stack.app.state.services.context.firewalls.settled()
    want = {h: r.marks + 1 for h, r in agents.items()}
    for host in agents:
        await stack.bus.cast(agent_topic(host), "mark")
    for _ in range(500):
        if all(r.marks == want[h] for h, r in agents.items()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the marks did not arrive")


async def _network(stack: Stack) -> str:
    net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
    for version, cidr in ((4, "10.0.0.0/24"), (6, "fd00::/64")):
        await stack.client.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "ip_version": version, "cidr": cidr}})
    return str(net["id"])


async def _port(stack: Stack, net_id: str, host: str | None = None,
                **body: Any) -> dict[str, Any]:
    if host:
        body["binding:host_id"] = host
    r = await stack.client.post("/v2.0/ports", json={"port": {
        "network_id": net_id, "device_owner": "compute:nova", **body}})
    assert r.status_code == 201, r.text
    return r.json()["port"]  # type: ignore[no-any-return]


async def _update(stack: Stack, port_id: str, **body: Any) -> dict[str, Any]:
    r = await stack.client.put(f"/v2.0/ports/{port_id}", json={"port": body})
    assert r.status_code == 200, r.text
    return r.json()["port"]  # type: ignore[no-any-return]


async def _group(stack: Stack, name: str) -> str:
    r = await stack.client.post("/v2.0/security-groups", json={"security_group": {"name": name}})
    assert r.status_code == 201, r.text
    return str(r.json()["security_group"]["id"])


async def _rule(stack: Stack, group_id: str, **body: Any) -> str:
    r = await stack.client.post(RULES, json={"security_group_rule": {
        "security_group_id": group_id, "direction": "ingress", **body}})
    assert r.status_code == 201, r.text
    return str(r.json()["security_group_rule"]["id"])


def _ips(*ports: dict[str, Any]) -> set[str]:
    return {ip["ip_address"] for p in ports for ip in p["fixed_ips"]}


async def test_every_port_details_carries_its_firewall(stack: Stack) -> None:
    agents = await _agents(stack)
    net_id = await _network(stack)
    web = await _group(stack, "web")
    await _rule(stack, web, protocol="tcp", port_range_min=80, port_range_max=80,
                remote_ip_prefix="192.0.2.9/24")
    first = await _port(stack, net_id, "h1")
    second = await _port(stack, net_id, allowed_address_pairs=[{"ip_address": "10.0.7.0/24"}])
    third = await _port(stack, net_id, "h1", security_groups=[web])
    open_port = await _port(stack, net_id, "h1", port_security_enabled=False)
    await _update(stack, second["id"], **{"binding:host_id": "h1"})
    await _settle(stack, agents)
    (default,) = first["security_groups"]
    pushed = {p["port_id"]: p["firewall"] for p in agents["h1"].bound}
    synced = {p["port_id"]: p["firewall"] for p in
              await stack.rpc("get_host_ports", host="h1")}
    asked = {p["id"]: (await stack.rpc("get_port_details", host="h1", port_id=p["id"]))[
        "firewall"] for p in (first, second, third, open_port)}
    assert synced == asked
    for port_id, firewall in synced.items():  # a bind's push: no members (the agent reads)
        assert "remote_members" not in pushed[port_id]
        assert pushed[port_id] == {k: v for k, v in firewall.items() if k != "remote_members"}

    wall = synced[second["id"]]
    assert (wall["security_groups"], wall["stateful"], wall["port_security_enabled"]) == (
        [default], True, True)
    assert {(r["direction"], r["ethertype"], r["remote_group_id"]) for r in wall["rules"]} == {
        ("ingress", "IPv4", default), ("ingress", "IPv6", default),
        ("egress", "IPv4", None), ("egress", "IPv6", None)}
    members = wall["remote_members"][default]
    assert set(members["IPv4"] + members["IPv6"]) == _ips(first, second) | {"10.0.7.0/24"}
    assert all(":" in a for a in members["IPv6"]) and all(":" not in a for a in members["IPv4"])
    assert wall["allowed_address_pairs"] == [
        {"ip_address": "10.0.7.0/24", "mac_address": second["mac_address"]}]

    web_wall = synced[third["id"]]
    assert web_wall["remote_members"] == {}  # web's rules name no group
    assert {(r["protocol"], r["port_range_min"], r["remote_ip_prefix"])
            for r in web_wall["rules"] if r["direction"] == "ingress"} == {
        (6, 80, "192.0.2.0/24")}
    assert synced[open_port["id"]] == {
        "port_id": open_port["id"], "port_security_enabled": False, "security_groups": [],
        "stateful": True, "rules": [], "remote_members": {}, "allowed_address_pairs": []}


async def test_members_reach_every_host_whose_rules_name_the_group(stack: Stack) -> None:
    agents = await _agents(stack)
    net_id = await _network(stack)
    a = await _port(stack, net_id, "h1")
    (default,) = a["security_groups"]
    await _settle(stack, agents)
    assert agents["h1"].addresses(default) == _ips(a)
    assert agents["h2"].members == {}  # no port there yet

    b = await _port(stack, net_id, "h2")
    unbound = await _port(stack, net_id)  # a member though bound nowhere
    await _settle(stack, agents)
    for host in HOSTS:
        assert agents[host].addresses(default) == _ips(a, b, unbound), host

    # A port of a group that no rule names as remote: no lists to send.
    web = await _group(stack, "web")
    casts = {h: r.member_casts for h, r in agents.items()}
    await _port(stack, net_id, "h1", security_groups=[web])
    await _settle(stack, agents)
    assert {h: r.member_casts for h, r in agents.items()} == casts
    assert web not in agents["h1"].members

    # New addresses, address pairs, leaving the group, deletion.
    b = await _update(stack, b["id"], fixed_ips=[{"ip_address": "10.0.0.99"}])
    await _settle(stack, agents)
    assert agents["h1"].addresses(default) == _ips(a, b, unbound)
    await _update(stack, unbound["id"], allowed_address_pairs=[{"ip_address": "10.0.8.8"}])
    await _settle(stack, agents)
    assert agents["h1"].addresses(default) == _ips(a, b, unbound) | {"10.0.8.8"}
    await _update(stack, unbound["id"], security_groups=[web])
    await _settle(stack, agents)
    assert agents["h2"].addresses(default) == _ips(a, b)
    assert (await stack.client.delete(f"/v2.0/ports/{b['id']}")).status_code == 204
    await _settle(stack, agents)
    assert agents["h1"].addresses(default) == _ips(a)


async def test_a_port_whose_groups_change_hears_its_own_firewall(stack: Stack) -> None:
    agents = await _agents(stack)
    net_id = await _network(stack)
    web = await _group(stack, "web")
    port = await _port(stack, net_id, "h2")
    await _update(stack, port["id"], security_groups=[web])
    await _settle(stack, agents)
    assert [w["security_groups"] for w in agents["h2"].walls] == [[web]]
    assert agents["h2"].bound[-1]["firewall"] == agents["h2"].walls[-1]
    await _update(stack, port["id"], security_groups=[], port_security_enabled=False)
    await _settle(stack, agents)
    assert agents["h2"].walls[-1]["port_security_enabled"] is False
    await _update(stack, port["id"], name="renamed")  # nothing the firewall holds
    await _settle(stack, agents)
    assert len(agents["h2"].walls) == 2


async def test_a_rule_change_reaches_the_groups_bound_ports(stack: Stack) -> None:
    agents = await _agents(stack)
    net_id = await _network(stack)
    a, b = await _port(stack, net_id, "h1"), await _port(stack, net_id, "h1")
    c = await _port(stack, net_id, "h2")
    await _port(stack, net_id)  # in the group, bound nowhere: nobody to tell
    web = await _group(stack, "web")
    other = await _port(stack, net_id, "h2", security_groups=[web])
    (default,) = a["security_groups"]
    await _settle(stack, agents)
    assert agents["h1"].walls == agents["h2"].walls == []

    rule_id = await _rule(stack, default, protocol="tcp", port_range_min=22,
                          port_range_max=22)
    await _settle(stack, agents)
    assert {w["port_id"] for w in agents["h1"].walls} == {a["id"], b["id"]}
    assert {w["port_id"] for w in agents["h2"].walls} == {c["id"]}  # not `other`
    assert all(any(r["port_range_min"] == 22 for r in w["rules"])
               for host in HOSTS for w in agents[host].walls)
    for recorder in agents.values():
        recorder.walls.clear()

    assert (await stack.client.delete(f"{RULES}/{rule_id}")).status_code == 204
    await _settle(stack, agents)
    assert {w["port_id"] for w in agents["h1"].walls} == {a["id"], b["id"]}
    assert not any(r["port_range_min"] == 22 for w in agents["h1"].walls for r in w["rules"])

    # A rule naming another group brings that group's members with it.
    await _rule(stack, web, protocol="udp", port_range_min=53, port_range_max=53,
                remote_group_id=default)
    await _settle(stack, agents)
    (wall,) = [w for w in agents["h2"].walls if w["port_id"] == other["id"]]
    listed = wall["remote_members"][default]
    assert _ips(a, b, c) <= set(listed["IPv4"] + listed["IPv6"])


async def test_deleting_a_group_named_by_rules_updates_the_ports_that_lose_them(
        stack: Stack) -> None:
    agents = await _agents(stack)
    net_id = await _network(stack)
    web, db = await _group(stack, "web"), await _group(stack, "db")
    await _rule(stack, db, protocol="tcp", port_range_min=5432, port_range_max=5432,
                remote_group_id=web)
    back = await _port(stack, net_id, "h1", security_groups=[db])
    assert "firewall" not in back  # the API does not render it
    await _settle(stack, agents)
    assert web in {r["remote_group_id"] for r in agents["h1"].bound[-1]["firewall"]["rules"]}
    assert (await stack.client.delete(f"/v2.0/security-groups/{web}")).status_code == 204
    await _settle(stack, agents)
    (wall,) = agents["h1"].walls
    assert wall["port_id"] == back["id"] and wall["remote_members"] == {}
    assert not any(r["remote_group_id"] for r in wall["rules"])


async def test_a_storm_of_members_is_coalesced_and_ends_complete(stack: Stack) -> None:
    agents = await _agents(stack)
    net_id = await _network(stack)
    first = await _port(stack, net_id, "h1")
    (default,) = first["security_groups"]
    casts = stack.app.state.services.context.firewalls
    before = casts.rounds
    made = await asyncio.gather(*(_port(stack, net_id, HOSTS[i % 2]) for i in range(12)))
    await _settle(stack, agents)
    assert casts.rounds - before < 12
    for host in HOSTS:
        assert agents[host].addresses(default) == _ips(first, *made), host


async def test_an_agent_reads_a_groups_members_as_committed(stack: Stack) -> None:
    """`get_group_members`: what the agent reads on `sg_members_changed` (whose own
    list may be older than another worker's)."""
    net_id = await _network(stack)
    first = await _port(stack, net_id, "h1")
    second = await _port(stack, net_id, allowed_address_pairs=[{"ip_address": "10.0.9.0/24"}])
    (default,) = first["security_groups"]
    members = await stack.rpc("get_group_members", host="h1", group_id=default)
    assert set(members["IPv4"] + members["IPv6"]) == _ips(first, second) | {"10.0.9.0/24"}
    await stack.client.delete(f"/v2.0/ports/{second['id']}")
    members = await stack.rpc("get_group_members", host="h1", group_id=default)
    assert set(members["IPv4"] + members["IPv6"]) == _ips(first)
    assert await stack.rpc("get_group_members", host="h1", group_id="no-such-group") == {
        "IPv4": [], "IPv6": []}
