"""Security groups on ports: defaults, port security rules, groups in use, what the
agent hears, and the firewall seam (issue 10 item 3), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from vifwire.server import security_groups
from vifwire.server._db import read

from .helpers import HOST, FakeAgent, Stack

GROUPS = "/v2.0/security-groups"
OTHER = "22222222222222222222222222222222"


async def _network(stack: Stack, **body: Any) -> str:
    net = (await stack.client.post("/v2.0/networks", json={"network": body})).json()["network"]
    for version, cidr in ((4, "10.0.0.0/24"), (6, "fd00::/64")):
        await stack.client.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "ip_version": version, "cidr": cidr}})
    return str(net["id"])


async def _port(stack: Stack, net_id: str, status: int = 201, **body: Any) -> dict[str, Any]:
    r = await stack.client.post("/v2.0/ports", json={"port": {"network_id": net_id, **body}})
    assert r.status_code == status, r.text
    return r.json()["port"] if status == 201 else r.json()["NeutronError"]  # type: ignore[no-any-return]


async def _update(stack: Stack, port_id: str, status: int = 200, **body: Any) -> dict[str, Any]:
    r = await stack.client.put(f"/v2.0/ports/{port_id}", json={"port": body})
    assert r.status_code == status, r.text
    return r.json()["port"] if status == 200 else r.json()["NeutronError"]  # type: ignore[no-any-return]


async def _group(stack: Stack, name: str, **body: Any) -> str:
    r = await stack.client.post(GROUPS, json={"security_group": {"name": name, **body}})
    assert r.status_code == 201, r.text
    return str(r.json()["security_group"]["id"])


async def test_a_port_gets_its_projects_default_group(stack: Stack) -> None:
    net_id = await _network(stack)
    first, second = await _port(stack, net_id), await _port(stack, net_id)
    groups = (await stack.client.get(GROUPS)).json()["security_groups"]
    assert [g["name"] for g in groups] == ["default"]  # made by the first port
    assert first["security_groups"] == second["security_groups"] == [groups[0]["id"]]
    assert first["port_security_enabled"] is True
    shown = (await stack.client.get(f"/v2.0/ports/{first['id']}")).json()["port"]
    assert shown["security_groups"] == [groups[0]["id"]]
    listed = (await stack.client.get("/v2.0/ports", params={
        "security_groups": groups[0]["id"]})).json()["ports"]
    assert {p["id"] for p in listed} == {first["id"], second["id"]}
    # Another project's port gets that project's default group.
    theirs = await _port(stack, net_id, project_id=OTHER)
    assert theirs["security_groups"] != first["security_groups"]
    assert len((await stack.client.get(GROUPS)).json()["security_groups"]) == 2


async def test_ports_without_port_security_have_no_groups(stack: Stack) -> None:
    open_net = await _network(stack, port_security_enabled=False)
    inherited = await _port(stack, open_net)
    assert (inherited["port_security_enabled"], inherited["security_groups"]) == (False, [])
    web = await _group(stack, "web")
    refused = await _port(stack, open_net, 400, security_groups=[web])
    assert refused["type"] == "PortSecurityAndIPRequiredForSecurityGroups"
    assert refused["message"] == ("Port security must be enabled and port must have an IP "
                                  "address in order to use security groups.")
    net_id = await _network(stack)
    off = await _port(stack, net_id, port_security_enabled=False)
    assert off["security_groups"] == []
    empty = await _port(stack, net_id, security_groups=[])
    assert (empty["port_security_enabled"], empty["security_groups"]) == (True, [])
    dhcp = await _port(stack, net_id, device_owner="network:dhcp")  # trusted
    assert (dhcp["port_security_enabled"], dhcp["security_groups"]) == (False, [])


async def test_a_ports_groups_must_exist_in_its_project_and_agree(stack: Stack) -> None:
    net_id = await _network(stack)
    web, db = await _group(stack, "web"), await _group(stack, "db")
    both = await _port(stack, net_id, security_groups=[db, web])
    assert both["security_groups"] == [db, web]
    missing = "0c0d0e0f-0000-4000-8000-000000000000"
    fault = await _port(stack, net_id, 404, security_groups=[web, missing])
    assert (fault["type"], fault["message"]) == ("SecurityGroupNotFound",
                                                 f"Security group {missing} does not exist")
    theirs = await _port(stack, net_id, 404, security_groups=[web], project_id=OTHER)
    assert theirs["type"] == "SecurityGroupNotFound"
    stateless = await _group(stack, "raw", stateful=False)
    mixed = await _port(stack, net_id, 409, security_groups=[web, stateless])
    assert mixed["type"] == "SecurityGroupConflict"
    assert "Cannot apply both stateful and stateless" in mixed["message"]
    twice = await _port(stack, net_id, 400, security_groups=[web, web])
    assert "Duplicate items in the list" in twice["message"]


async def test_port_security_off_needs_the_groups_and_pairs_gone(stack: Stack) -> None:
    net_id = await _network(stack)
    port = await _port(stack, net_id)
    fault = await _update(stack, port["id"], 409, port_security_enabled=False)
    assert (fault["type"], fault["message"]) == (
        "PortSecurityPortHasSecurityGroup", "Port has security group associated. Cannot "
        "disable port security or IP address until security group is removed.")
    web = await _group(stack, "web")
    fault = await _update(stack, port["id"], 400, port_security_enabled=False,
                          security_groups=[web])
    assert fault["type"] == "PortSecurityAndIPRequiredForSecurityGroups"
    off = await _update(stack, port["id"], port_security_enabled=False, security_groups=[])
    assert (off["port_security_enabled"], off["security_groups"]) == (False, [])
    fault = await _update(stack, port["id"], 400, security_groups=[web])
    assert fault["type"] == "PortSecurityAndIPRequiredForSecurityGroups"
    on = await _update(stack, port["id"], port_security_enabled=True, security_groups=[web],
                       allowed_address_pairs=[{"ip_address": "10.0.0.200"}])
    assert (on["port_security_enabled"], on["security_groups"]) == (True, [web])
    fault = await _update(stack, port["id"], 409, port_security_enabled=False,
                          security_groups=[])
    assert fault["type"] == "AddressPairAndPortSecurityRequired"


async def test_a_group_in_use_stays(stack: Stack) -> None:
    net_id = await _network(stack)
    web, db = await _group(stack, "web"), await _group(stack, "db")
    port = await _port(stack, net_id, security_groups=[web])
    r = await stack.client.delete(f"{GROUPS}/{web}")
    assert r.status_code == 409 and r.json()["NeutronError"] == {
        "type": "SecurityGroupInUse", "message": f"Security Group {web} in use.", "detail": ""}
    r = await stack.client.put(f"{GROUPS}/{web}", json={"security_group": {"stateful": False}})
    assert r.json()["NeutronError"]["type"] == "SecurityGroupInUse"
    renamed = await stack.client.put(f"{GROUPS}/{web}", json={"security_group": {
        "name": "www", "stateful": True}})  # stateful unchanged: allowed
    assert renamed.status_code == 200
    await _update(stack, port["id"], security_groups=[db])  # web is free now
    assert (await stack.client.delete(f"{GROUPS}/{web}")).status_code == 204
    assert (await stack.client.delete(f"/v2.0/ports/{port['id']}")).status_code == 204
    assert (await stack.client.delete(f"{GROUPS}/{db}")).status_code == 204


async def test_the_agent_hears_a_ports_groups(stack: Stack, agent: FakeAgent) -> None:
    await stack.register_agent()
    net_id = await _network(stack)
    port = await _port(stack, net_id, device_owner="compute:nova", **{"binding:host_id": HOST})
    for _ in range(5):
        await asyncio.sleep(0)
    assert agent.bound[-1]["security_groups"] == port["security_groups"]
    assert agent.bound[-1]["port_security_enabled"] is True
    web = await _group(stack, "web")
    await _update(stack, port["id"], security_groups=[web])
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(agent.bound) == 2 and agent.bound[-1]["security_groups"] == [web]
    hosted = await stack.rpc("get_host_ports", host=HOST)
    assert hosted[0]["security_groups"] == [web]


async def test_port_firewall_gives_rules_and_remote_members(stack: Stack) -> None:
    net_id = await _network(stack)
    web, db = await _group(stack, "web"), await _group(stack, "db")
    await stack.client.post("/v2.0/security-group-rules", json={"security_group_rule": {
        "security_group_id": db, "direction": "ingress", "protocol": "tcp",
        "port_range_min": 5432, "port_range_max": 5432, "remote_group_id": web}})
    await stack.client.post("/v2.0/security-group-rules", json={"security_group_rule": {
        "security_group_id": db, "direction": "ingress", "protocol": "icmp",
        "remote_ip_prefix": "192.168.1.7/24"}})
    front = await _port(stack, net_id, security_groups=[web],
                        allowed_address_pairs=[{"ip_address": "10.0.9.0/24"}])
    back = await _port(stack, net_id, security_groups=[db])
    engine = stack.app.state.services.context.engine
    firewall = read(engine, lambda conn: security_groups.port_firewall(conn, back["id"]))
    assert (firewall["security_groups"], firewall["stateful"]) == ([db], True)
    assert firewall["port_security_enabled"] is True
    ingress = [r for r in firewall["rules"] if r["direction"] == "ingress"]
    assert {(r["protocol"], r["port_range_min"], r["remote_group_id"], r["remote_ip_prefix"])
            for r in ingress} == {(6, 5432, web, None), (1, None, None, "192.168.1.0/24")}
    assert len(firewall["rules"]) == 4  # and the two egress rules
    front_ips = sorted(ip["ip_address"] for ip in front["fixed_ips"])
    members = firewall["remote_members"][web]
    assert sorted(members["IPv4"] + members["IPv6"]) == sorted([*front_ips, "10.0.9.0/24"])


async def test_racing_first_ports_make_one_default_group(stack: Stack) -> None:
    net_id = await _network(stack)
    made = await asyncio.gather(*(_port(stack, net_id) for _ in range(6)))
    assert len({tuple(p["security_groups"]) for p in made}) == 1
    groups = (await stack.client.get(GROUPS)).json()["security_groups"]
    assert [g["name"] for g in groups] == ["default"]
