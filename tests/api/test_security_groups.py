"""Security groups and rules over HTTP: Neutron's shapes, defaults and error bodies."""

from __future__ import annotations

from typing import Any

import pytest

from server.helpers import Stack
from vifwire.server.caller import caller_is_admin

GROUPS, RULES = "/v2.0/security-groups", "/v2.0/security-group-rules"
OTHER = "11111111111111111111111111111111"


async def _group(stack: Stack, name: str = "web", **extra: Any) -> dict[str, Any]:
    answer = await stack.client.post(GROUPS, json={"security_group": {"name": name, **extra}})
    assert answer.status_code == 201, answer.text
    group: dict[str, Any] = answer.json()["security_group"]
    return group


async def _rule(stack: Stack, group_id: str, **rule: Any) -> Any:
    return await stack.client.post(RULES, json={"security_group_rule": {
        "security_group_id": group_id, "direction": "ingress", **rule}})


def _error(answer: Any, status: int) -> tuple[str, str]:
    assert answer.status_code == status, answer.text
    fault = answer.json()["NeutronError"]
    return fault["type"], fault["message"]


def _shape(rule: dict[str, Any]) -> tuple[Any, ...]:
    return (rule["direction"], rule["ethertype"], rule["protocol"], rule["remote_group_id"],
            rule["remote_ip_prefix"])


async def test_first_list_makes_the_projects_default_group(stack: Stack) -> None:
    listed = (await stack.client.get(GROUPS)).json()["security_groups"]
    assert [g["name"] for g in listed] == ["default"]
    default = listed[0]
    assert default["description"] == "Default security group" and default["stateful"] is True
    assert default["tenant_id"] == default["project_id"]
    assert sorted(_shape(r) for r in default["security_group_rules"]) == [
        ("egress", "IPv4", None, None, None), ("egress", "IPv6", None, None, None),
        ("ingress", "IPv4", None, default["id"], None),
        ("ingress", "IPv6", None, default["id"], None)]
    again = (await stack.client.get(GROUPS)).json()["security_groups"]
    assert [g["id"] for g in again] == [default["id"]]
    # Another project's list makes that project's own, and sees only... all (no policy).
    other = (await stack.client.get(GROUPS, headers={"X-Project-Id": OTHER})).json()
    assert sorted(g["project_id"] for g in other["security_groups"]) == sorted(
        [default["project_id"], OTHER])
    rules = (await stack.client.get(RULES, params={"security_group_id": default["id"]})).json()
    assert len(rules["security_group_rules"]) == 4


async def test_create_show_update_delete_a_group(stack: Stack) -> None:
    c = stack.client
    group = await _group(stack, description="front", stateful=False)
    assert (group["name"], group["description"], group["stateful"]) == ("web", "front", False)
    assert sorted(_shape(r) for r in group["security_group_rules"]) == [
        ("egress", "IPv4", None, None, None), ("egress", "IPv6", None, None, None)]
    assert group["revision_number"] == 1 and group["tags"] == []
    names = sorted(g["name"] for g in (await c.get(GROUPS)).json()["security_groups"])
    assert names == ["default", "web"]  # creating one made the default first
    shown = (await c.get(f"{GROUPS}/{group['id']}", params={"fields": ["id", "name"]})).json()
    assert shown == {"security_group": {"id": group["id"], "name": "web"}}
    updated = (await c.put(f"{GROUPS}/{group['id']}", json={"security_group": {
        "name": "web2", "stateful": True}})).json()["security_group"]
    assert (updated["name"], updated["stateful"], updated["revision_number"]) == (
        "web2", True, 2)
    assert (await c.put(f"{GROUPS}/{group['id']}/tags/blue")).status_code == 201
    tagged = (await c.get(GROUPS, params={"tags": "blue"})).json()["security_groups"]
    assert [g["id"] for g in tagged] == [group["id"]] and tagged[0]["tags"] == ["blue"]
    assert (await c.delete(f"{GROUPS}/{group['id']}")).status_code == 204
    assert _error(await c.get(f"{GROUPS}/{group['id']}"), 404) == (
        "SecurityGroupNotFound", f"Security group {group['id']} does not exist")


async def test_the_default_group_is_the_only_default(stack: Stack) -> None:
    c = stack.client
    default = (await c.get(GROUPS)).json()["security_groups"][0]
    for name in ("default", "DeFault"):
        assert _error(await c.post(GROUPS, json={"security_group": {"name": name}}), 409) == (
            "SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
    group = await _group(stack)
    assert _error(await c.put(f"{GROUPS}/{group['id']}", json={"security_group": {
        "name": "default"}}), 409)[0] == "SecurityGroupDefaultAlreadyExists"
    assert _error(await c.put(f"{GROUPS}/{default['id']}", json={"security_group": {
        "name": "x"}}), 409) == ("SecurityGroupCannotUpdateDefault",
                                 "Updating default security group not allowed.")
    described = await c.put(f"{GROUPS}/{default['id']}", json={"security_group": {
        "description": "ours"}})
    assert described.json()["security_group"]["description"] == "ours"
    # Only an admin may delete it (noauth: every caller), as Tempest's cleanup does.
    token = caller_is_admin.set(False)
    try:
        assert _error(await c.delete(f"{GROUPS}/{default['id']}"), 409) == (
            "SecurityGroupCannotRemoveDefault",
            "Insufficient rights for removing default security group.")
    finally:
        caller_is_admin.reset(token)
    assert (await c.delete(f"{GROUPS}/{default['id']}")).status_code == 204
    # The project's next list makes it a new default group.
    again = (await c.get(GROUPS)).json()["security_groups"]
    assert [g["name"] for g in again if g["name"] == "default"] == ["default"]
    assert default["id"] not in {g["id"] for g in again}


async def test_groups_list_with_filters_sorting_and_pages(stack: Stack) -> None:
    c = stack.client
    for name in ("b", "a", "c"):
        await _group(stack, name, stateful=name != "c")
    page = (await c.get(GROUPS, params={"sort_key": "name", "sort_dir": "asc",
                                        "limit": 2})).json()
    assert [g["name"] for g in page["security_groups"]] == ["a", "b"]
    assert [link["rel"] for link in page["security_groups_links"]] == ["next"]
    stateless = (await c.get(GROUPS, params={"stateful": "false"})).json()["security_groups"]
    assert [g["name"] for g in stateless] == ["c"]
    assert _error(await c.get(GROUPS, params={"color": "x"}), 400)[1] == (
        "[color] is invalid attribute for filtering")


async def test_rules_shapes_and_canonical_forms(stack: Stack) -> None:
    group = await _group(stack)
    web = (await _rule(stack, group["id"], protocol="TCP", port_range_min=80,
                       port_range_max=443, remote_ip_prefix="10.0.0.5/24")).json()
    rule = web["security_group_rule"]
    assert (rule["protocol"], rule["port_range_min"], rule["port_range_max"]) == ("tcp", 80, 443)
    assert (rule["remote_ip_prefix"], rule["normalized_cidr"]) == ("10.0.0.5/24", "10.0.0.0/24")
    assert (rule["ethertype"], rule["remote_group_id"], rule["description"]) == ("IPv4", None, "")
    host = (await _rule(stack, group["id"], ethertype="ipv6",
                        remote_ip_prefix="2001:DB8::1")).json()["security_group_rule"]
    assert (host["ethertype"], host["remote_ip_prefix"]) == ("IPv6", "2001:db8::1/128")
    icmp6 = (await _rule(stack, group["id"], ethertype="IPv6", protocol="icmp",
                         port_range_min=128, port_range_max=0)).json()["security_group_rule"]
    assert (icmp6["protocol"], icmp6["port_range_min"], icmp6["port_range_max"]) == (
        "ipv6-icmp", 128, 0)
    everything = (await _rule(stack, group["id"], protocol="udp", port_range_min=1,
                              port_range_max=65535)).json()["security_group_rule"]
    assert (everything["port_range_min"], everything["port_range_max"]) == (None, None)
    numbered = (await _rule(stack, group["id"], protocol=132)).json()["security_group_rule"]
    assert numbered["protocol"] == "132"
    anything = (await _rule(stack, group["id"], protocol="any",
                            remote_group_id=group["id"])).json()["security_group_rule"]
    assert (anything["protocol"], anything["remote_group_id"]) == (None, group["id"])
    shown = (await stack.client.get(GROUPS + "/" + group["id"])).json()["security_group"]
    assert len(shown["security_group_rules"]) == 2 + 6
    assert shown["revision_number"] == 1 + 6  # each rule bumps its group
    listed = (await stack.client.get(RULES, params={"protocol": "tcp"})).json()
    assert [r["id"] for r in listed["security_group_rules"]] == [rule["id"]]
    assert (await stack.client.delete(f"{RULES}/{rule['id']}")).status_code == 204
    assert _error(await stack.client.get(f"{RULES}/{rule['id']}"), 404) == (
        "SecurityGroupRuleNotFound", f"Security group rule {rule['id']} does not exist")


@pytest.mark.parametrize(("rule", "fault"), [
    ({"protocol": "foo"}, "SecurityGroupRuleInvalidProtocol"),
    ({"protocol": 256}, "SecurityGroupRuleInvalidProtocol"),
    ({"ethertype": "IPv5"}, "SecurityGroupRuleInvalidEtherType"),
    ({"port_range_min": 22}, "SecurityGroupProtocolRequiredWithPorts"),
    ({"protocol": "tcp", "port_range_min": 80, "port_range_max": 79},
     "SecurityGroupInvalidPortRange"),
    ({"protocol": "tcp", "port_range_min": 80}, "SecurityGroupInvalidPortRange"),
    ({"protocol": "tcp", "port_range_min": 0, "port_range_max": 80},
     "SecurityGroupInvalidPortValue"),
    ({"protocol": "tcp", "port_range_min": 65536, "port_range_max": 65536},
     "SecurityGroupInvalidPortValue"),
    ({"protocol": "gre", "port_range_min": 1, "port_range_max": 2},
     "SecurityGroupInvalidProtocolForPort"),
    ({"protocol": "icmp", "port_range_min": 256}, "SecurityGroupInvalidIcmpValue"),
    ({"protocol": "icmp", "port_range_max": 3}, "SecurityGroupMissingIcmpType"),
    ({"remote_ip_prefix": "::/0"}, "SecurityGroupRuleParameterConflict"),
    ({"remote_ip_prefix": "10.0.0.300/8"}, "InvalidCIDR"),
    ({"protocol": "ipv6-icmp"}, "SecurityGroupEthertypeConflictWithProtocol"),
    ({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": "GROUP"},
     "SecurityGroupMultipleRemoteEntites"),
    ({"direction": "sideways"}, "HTTPBadRequest"),
    ({"remote_address_group_id": "x"}, "HTTPBadRequest"),
])
async def test_invalid_rules_get_neutrons_400s(stack: Stack, rule: dict[str, Any],
                                               fault: str) -> None:
    group = await _group(stack)
    rule = {k: group["id"] if v == "GROUP" else v for k, v in rule.items()}
    assert _error(await _rule(stack, group["id"], **rule), 400)[0] == fault


async def test_rule_messages_are_neutrons(stack: Stack) -> None:
    group = await _group(stack)
    assert _error(await _rule(stack, group["id"], protocol="tcp", port_range_min=9,
                              port_range_max=8), 400)[1] == (
        "For TCP/UDP protocols, port_range_min must be <= port_range_max")
    assert _error(await _rule(stack, group["id"], protocol="gre", port_range_min=1,
                              port_range_max=1), 400)[1] == (
        "Ports cannot be specified for protocol 47. Ports are only supported for DCCP, "
        "SCTP, TCP, UDP, UDPLITE.")
    assert _error(await _rule(stack, group["id"], remote_ip_prefix="::/0"), 400)[1] == (
        "Conflicting value ethertype IPv4 for CIDR ::/0")
    missing = await stack.client.post(RULES, json={"security_group_rule": {
        "security_group_id": group["id"]}})
    assert _error(missing, 400)[1] == (
        "Failed to parse request. Required attribute 'direction' not specified")


async def test_duplicates_and_missing_groups(stack: Stack) -> None:
    group = await _group(stack)
    first = (await _rule(stack, group["id"], protocol="tcp", port_range_min=22,
                         port_range_max=22)).json()["security_group_rule"]
    same = await _rule(stack, group["id"], protocol="6", port_range_min=22, port_range_max=22)
    assert _error(same, 409) == ("SecurityGroupRuleExists", "Security group rule already "
                                 f"exists. Rule id is {first['id']}.")
    # An any-address prefix is the same as none: the default egress rules exist already.
    assert _error(await _rule(stack, group["id"], direction="egress",
                              remote_ip_prefix="0.0.0.0/0"), 409)[0] == "SecurityGroupRuleExists"
    twice = {"security_group_id": group["id"], "direction": "ingress", "protocol": "udp"}
    bulk = await stack.client.post(RULES, json={"security_group_rules": [twice, twice]})
    assert _error(bulk, 409)[0] == "DuplicateSecurityGroupRuleInPost"
    nowhere = "9d0f3a52-2b8e-4c43-9e36-4d8a0e0a0a0a"
    assert _error(await _rule(stack, nowhere), 404) == (
        "SecurityGroupNotFound", f"Security group {nowhere} does not exist")
    assert _error(await _rule(stack, group["id"], remote_group_id=nowhere), 404)[0] == (
        "SecurityGroupNotFound")
    made = await stack.client.post(RULES, json={"security_group_rules": [
        twice, {**twice, "protocol": "tcp"}]})
    assert made.status_code == 201 and len(made.json()["security_group_rules"]) == 2


async def test_deleting_a_group_takes_the_rules_that_name_it(stack: Stack) -> None:
    web, db = await _group(stack, "web"), await _group(stack, "db")
    rule = (await _rule(stack, db["id"], remote_group_id=web["id"])).json()
    assert (await stack.client.delete(f"{GROUPS}/{web['id']}")).status_code == 204
    assert (await stack.client.get(f"{RULES}/{rule['security_group_rule']['id']}")
            ).status_code == 404


async def test_extensions_and_resources_list_security_groups(stack: Stack) -> None:
    aliases = {e["alias"] for e in (await stack.client.get("/v2.0/extensions")).json()[
        "extensions"]}
    assert {"security-group", "port-security", "allowed-address-pairs",
            "stateful-security-group", "security-groups-normalized-cidr"} <= aliases
    assert (await stack.client.get("/v2.0/extensions/security-group")).status_code == 200
    names = {r["collection"] for r in (await stack.client.get("/v2.0")).json()["resources"]}
    assert {"security-groups", "security-group-rules"} <= names
