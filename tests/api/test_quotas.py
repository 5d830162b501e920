"""Quotas over HTTP: Neutron's shapes, per-project limits, OverQuota on create."""

from __future__ import annotations

from typing import Any

from server.helpers import Stack

P1, P2 = "a" * 32, "b" * 32
QUOTAS = "/v2.0/quotas"


def _error(answer: Any, status: int) -> tuple[str, str]:
    assert answer.status_code == status, answer.text
    fault = answer.json()["NeutronError"]
    return fault["type"], fault["message"]


async def _network(stack: Stack, project: str) -> Any:
    return await stack.client.post("/v2.0/networks", json={"network": {"project_id": project}})


async def test_defaults_come_from_settings_and_a_set_limit_is_listed(stack: Stack) -> None:
    defaults = (await stack.client.get(f"{QUOTAS}/{P1}/default")).json()["quota"]
    assert defaults == stack.settings.quota_defaults
    assert defaults["network"] == 100 and defaults["port"] == 500
    assert (await stack.client.get(QUOTAS)).json() == {"quotas": []}

    answer = await stack.client.put(f"{QUOTAS}/{P1}", json={"quota": {"network": 0,
                                                                      "port": "7"}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["quota"]["network"] == 0 and answer.json()["quota"]["port"] == 7
    listed = (await stack.client.get(QUOTAS)).json()["quotas"]
    assert [q["project_id"] for q in listed] == [P1] and listed[0]["subnet"] == 100
    shown = (await stack.client.get(f"{QUOTAS}/{P1}")).json()["quota"]
    assert shown["network"] == 0 and shown["security_group"] == 10
    assert (await stack.client.get(f"{QUOTAS}/{P2}")).json()["quota"]["network"] == 100

    assert (await stack.client.delete(f"{QUOTAS}/{P1}")).status_code == 204
    assert (await stack.client.get(QUOTAS)).json() == {"quotas": []}
    assert (await stack.client.get(f"{QUOTAS}/{P1}")).json()["quota"] == defaults
    assert _error(await stack.client.delete(f"{QUOTAS}/{P1}"), 404)[0] == "TenantQuotaNotFound"


async def test_create_beyond_the_limit_is_over_quota_for_that_project_only(
        stack: Stack) -> None:
    await stack.client.put(f"{QUOTAS}/{P1}", json={"quota": {"network": 2}})
    for _ in range(2):
        assert (await _network(stack, P1)).status_code == 201
    assert _error(await _network(stack, P1), 409) == (
        "OverQuota", "Quota exceeded for resources: ['network'].")
    assert (await _network(stack, P2)).status_code == 201
    # A bulk create that would cross the limit makes none of them.
    await stack.client.put(f"{QUOTAS}/{P2}", json={"quota": {"network": 2}})
    bulk = await stack.client.post("/v2.0/networks", json={"networks": [
        {"project_id": P2}, {"project_id": P2}]})
    assert _error(bulk, 409)[0] == "OverQuota"
    nets = (await stack.client.get("/v2.0/networks", params={"project_id": P2})).json()
    assert len(nets["networks"]) == 1
    # -1 is unlimited.
    await stack.client.put(f"{QUOTAS}/{P1}", json={"quota": {"network": -1}})
    assert (await _network(stack, P1)).status_code == 201


async def test_ports_subnets_and_groups_are_limited_and_details_count_usage(
        stack: Stack) -> None:
    net = (await _network(stack, P1)).json()["network"]
    subnet = {"network_id": net["id"], "ip_version": 4, "project_id": P1}
    await stack.client.put(f"{QUOTAS}/{P1}", json={"quota": {
        "subnet": 1, "port": 1, "security_group": 1, "security_group_rule": 6}})
    assert (await stack.client.post("/v2.0/subnets", json={"subnet": {
        **subnet, "cidr": "10.0.0.0/24"}})).status_code == 201
    assert _error(await stack.client.post("/v2.0/subnets", json={"subnet": {
        **subnet, "cidr": "10.0.1.0/24"}}), 409)[1].endswith("['subnet'].")
    port = {"port": {"network_id": net["id"], "project_id": P1}}
    assert (await stack.client.post("/v2.0/ports", json=port)).status_code == 201
    assert _error(await stack.client.post("/v2.0/ports", json=port), 409)[1].endswith(
        "['port'].")
    # The project's default group (and its 4 rules) count; a new group exceeds 1.
    group = {"security_group": {"name": "web", "project_id": P1}}
    assert _error(await stack.client.post("/v2.0/security-groups", json=group), 409)[0] \
        == "OverQuota"
    details = (await stack.client.get(f"{QUOTAS}/{P1}/details")).json()["quota"]
    assert (await stack.client.get(f"{QUOTAS}/{P1}/details.json")).json()["quota"] == details
    assert details["port"] == {"limit": 1, "used": 1, "reserved": 0}
    assert details["network"] == {"limit": 100, "used": 1, "reserved": 0}
    assert details["security_group"]["used"] == 1
    assert details["security_group_rule"]["used"] == 4


async def test_bad_quota_bodies_are_neutron_errors(stack: Stack) -> None:
    url = f"{QUOTAS}/{P1}"
    assert _error(await stack.client.put(url, json={"quota": {"network": -2}}), 400)[0] \
        == "InvalidInput"
    assert _error(await stack.client.put(url, json={"quota": {"network": "x"}}), 400)[0] \
        == "InvalidInput"
    assert _error(await stack.client.put(url, json={"quota": {"router": 1}}), 400)[1] \
        == "Unrecognized attribute(s) 'router'"
    assert _error(await stack.client.put(url, json={"network": 1}), 400)[0] \
        == "HTTPBadRequest"
    # quota-check-limit: a limit below the usage is refused only when asked to check.
    await _network(stack, P1)
    checked = await stack.client.put(url, json={"quota": {"network": 0, "check_limit": True}})
    assert _error(checked, 409)[0] == "InvalidQuotaValue"
    assert (await stack.client.put(url, json={"quota": {"network": 0}})).status_code == 200
