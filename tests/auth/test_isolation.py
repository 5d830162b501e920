"""Two projects and an admin behind a real Keystone: each resource's isolation and
Neutron's default policy, checked from both sides."""

from __future__ import annotations

from typing import Any

from .conftest import Caller, Cloud

ATTRS = {"networks": "network", "subnets": "subnet", "ports": "port",
         "security-groups": "security_group", "security-group-rules": "security_group_rule"}


async def _estate(owner: Caller) -> dict[str, dict[str, Any]]:
    """One of each resource, made by `owner`."""
    net = await owner.post("networks", "network", name=f"{owner.name}-net")
    subnet = await owner.post("subnets", "subnet", network_id=net["id"], ip_version=4,
                              cidr="10.1.0.0/24")
    port = await owner.post("ports", "port", network_id=net["id"], name=f"{owner.name}-port")
    group = await owner.post("security-groups", "security_group", name=f"{owner.name}-sg")
    rule = await owner.post("security-group-rules", "security_group_rule",
                            security_group_id=group["id"], direction="ingress",
                            ethertype="IPv4", protocol="tcp", port_range_min=22,
                            port_range_max=22)
    return {"networks": net, "subnets": subnet, "ports": port, "security-groups": group,
            "security-group-rules": rule}


async def _ids(caller: Caller, collection: str, **params: str) -> set[str]:
    answer = await caller.call("GET", f"/v2.0/{collection}", params=params)
    assert answer.status_code == 200, answer.text
    return {i["id"] for i in answer.json()[collection.replace("-", "_")]}


async def _assert_hidden(stranger: Caller, estate: dict[str, dict[str, Any]]) -> None:
    """Nothing of `estate` exists for `stranger`: not listed, and 404 (not 403) on each verb."""
    for collection, item in estate.items():
        member = ATTRS[collection]
        url = f"/v2.0/{collection}/{item['id']}"
        assert item["id"] not in await _ids(stranger, collection), (stranger.name, collection)
        assert item["id"] not in await _ids(stranger, collection, id=item["id"])
        # Naming the owner's project in a filter shows nothing more.
        assert not await _ids(stranger, collection, project_id=item["project_id"]) & {item["id"]}
        body = {"name": "taken"} if collection != "security-group-rules" else {}
        for method, kwargs in (("GET", {}), ("PUT", {"json": {member: body}}),
                               ("DELETE", {})):
            if method == "PUT" and collection == "security-group-rules":
                continue  # rules are not updatable at all
            answer = await stranger.call(method, url, **kwargs)
            assert answer.status_code == 404, (stranger.name, method, url, answer.text)
            assert "NotFound" in answer.json()["NeutronError"]["type"]
        if collection in ("networks", "subnets", "ports", "security-groups"):
            for method in ("GET", "PUT", "DELETE"):
                tags = await stranger.call(method, f"{url}/tags", json={"tags": ["x"]})
                assert tags.status_code == 404, (method, url, tags.text)
            assert (await stranger.call("PUT", f"{url}/tags/x")).status_code == 404


async def test_each_project_sees_only_its_own_and_the_admin_sees_all(cloud: Cloud) -> None:
    alice, bob, admin = cloud.alice, cloud.bob, cloud.admin
    theirs = {"alice": await _estate(alice), "bob": await _estate(bob)}
    await _assert_hidden(bob, theirs["alice"])
    await _assert_hidden(alice, theirs["bob"])
    for owner, estate in ((alice, theirs["alice"]), (bob, theirs["bob"])):
        for collection, item in estate.items():
            assert item["project_id"] == owner.project_id
            assert item["id"] in await _ids(owner, collection)
            shown = await owner.call("GET", f"/v2.0/{collection}/{item['id']}")
            assert shown.status_code == 200, shown.text
            assert item["id"] in await _ids(admin, collection)
            assert (await admin.call("GET", f"/v2.0/{collection}/{item['id']}")
                    ).status_code == 200
    # Nothing of one project was changed by the other's attempts.
    for estate in theirs.values():
        for collection, item in estate.items():
            if "name" in item:
                shown = (await admin.call("GET", f"/v2.0/{collection}/{item['id']}")).json()
                assert shown[ATTRS[collection]]["name"] == item["name"]
    # The owner still updates and deletes its own.
    port = theirs["alice"]["ports"]
    renamed = await alice.call("PUT", f"/v2.0/ports/{port['id']}", json={"port": {"name": "r"}})
    assert renamed.status_code == 200 and renamed.json()["port"]["name"] == "r"
    assert (await alice.call("DELETE", f"/v2.0/ports/{port['id']}")).status_code == 204


async def test_a_stranger_cannot_use_another_projects_network_or_group(cloud: Cloud) -> None:
    estate = await _estate(cloud.alice)
    bob = cloud.bob
    for collection, member, body in (
            ("ports", "port", {"network_id": estate["networks"]["id"]}),
            ("subnets", "subnet", {"network_id": estate["networks"]["id"], "ip_version": 4,
                                   "cidr": "10.9.0.0/24"}),
            ("security-group-rules", "security_group_rule", {
                "security_group_id": estate["security-groups"]["id"], "direction": "egress"})):
        answer = await bob.call("POST", f"/v2.0/{collection}", json={member: body})
        assert answer.status_code == 404, (collection, answer.text)
    # Nor put his port in her security group.
    bobs_net = await bob.post("networks", "network")
    group = estate["security-groups"]["id"]
    refused = await bob.call("POST", "/v2.0/ports", json={"port": {
        "network_id": bobs_net["id"], "security_groups": [group]}})
    assert refused.status_code == 404, refused.text
    assert refused.json()["NeutronError"]["type"] == "SecurityGroupNotFound"
    port = await bob.post("ports", "port", network_id=bobs_net["id"])
    moved = await bob.call("PUT", f"/v2.0/ports/{port['id']}",
                           json={"port": {"security_groups": [group]}})
    assert moved.status_code == 404, moved.text


async def test_project_id_of_another_project_needs_admin(cloud: Cloud) -> None:
    alice, bob, admin = cloud.alice, cloud.bob, cloud.admin
    for project_key in ("project_id", "tenant_id"):
        refused = await alice.call("POST", "/v2.0/networks", json={
            "network": {project_key: bob.project_id}})
        assert refused.status_code == 400, refused.text
        assert "requires admin" in refused.json()["NeutronError"]["message"]
    assert await _ids(bob, "networks") == set()
    # Naming one's own project is fine.
    own = await alice.call("POST", "/v2.0/networks", json={
        "network": {"project_id": alice.project_id}})
    assert own.status_code == 201
    # The admin makes a network for bob: it is bob's, and alice does not see it.
    made = await admin.post("networks", "network", project_id=bob.project_id, name="given")
    assert made["project_id"] == bob.project_id
    assert made["id"] in await _ids(bob, "networks")
    assert made["id"] not in await _ids(alice, "networks")
    port = await admin.post("ports", "port", network_id=made["id"], project_id=bob.project_id)
    assert port["id"] in await _ids(bob, "ports")
    # Bulk: one foreign body refuses the whole request.
    bulk = await alice.call("POST", "/v2.0/networks", json={"networks": [
        {"name": "a"}, {"name": "b", "project_id": bob.project_id}]})
    assert bulk.status_code == 400
    assert not {n for n in await _ids(alice, "networks")} - {own.json()["network"]["id"]}


async def test_binding_and_provider_attributes_are_the_admins(cloud: Cloud) -> None:
    alice, admin = cloud.alice, cloud.admin
    await cloud.stack.register_agent("compute-1")
    net = await alice.post("networks", "network")
    for attr in ("provider:network_type", "provider:physical_network",
                 "provider:segmentation_id"):
        assert attr not in net
        assert attr in (await admin.call("GET", f"/v2.0/networks/{net['id']}")
                        ).json()["network"]
    refused = await alice.call("POST", "/v2.0/networks", json={
        "network": {"provider:network_type": "vxlan"}})
    assert refused.status_code == 403, refused.text
    assert refused.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    assert "create_network:provider:network_type" in refused.json()["NeutronError"]["message"]
    shared = await alice.call("POST", "/v2.0/networks", json={"network": {"shared": True}})
    assert shared.status_code == 403
    port = await alice.post("ports", "port", network_id=net["id"])
    hidden = ("binding:host_id", "binding:vif_type", "binding:vif_details", "binding:profile")
    assert not set(hidden) & set(port)
    assert "binding:vnic_type" in port
    listed = (await alice.call("GET", "/v2.0/ports")).json()["ports"]
    assert listed and not set(hidden) & set(listed[0])
    for body in ({"binding:host_id": "compute-1"}, {"binding:profile": {"a": 1}}):
        create = await alice.call("POST", "/v2.0/ports", json={
            "port": {"network_id": net["id"], **body}})
        assert create.status_code == 403, create.text
        update = await alice.call("PUT", f"/v2.0/ports/{port['id']}", json={"port": body})
        assert update.status_code == 403, update.text
    bound = await admin.call("PUT", f"/v2.0/ports/{port['id']}", json={
        "port": {"binding:host_id": "compute-1"}})
    assert bound.status_code == 200, bound.text
    assert bound.json()["port"]["binding:host_id"] == "compute-1"
    assert "binding:host_id" not in (await alice.call("GET", f"/v2.0/ports/{port['id']}")
                                     ).json()["port"]


async def test_a_shared_network_is_everyones_to_see_and_its_owners_to_change(
        cloud: Cloud) -> None:
    alice, bob, admin = cloud.alice, cloud.bob, cloud.admin
    net = await admin.post("networks", "network", shared=True, name="public")
    subnet = await admin.post("subnets", "subnet", network_id=net["id"], ip_version=4,
                              cidr="10.5.0.0/24")
    for caller in (alice, bob):
        assert net["id"] in await _ids(caller, "networks")
        assert subnet["id"] in await _ids(caller, "subnets")
        assert (await caller.call("GET", f"/v2.0/networks/{net['id']}")).status_code == 200
        assert (await caller.call("GET", f"/v2.0/subnets/{subnet['id']}")).status_code == 200
        # Seen, not theirs: 403, not 404.
        for method, url, body in (
                ("PUT", f"/v2.0/networks/{net['id']}", {"network": {"name": "x"}}),
                ("DELETE", f"/v2.0/networks/{net['id']}", None),
                ("PUT", f"/v2.0/subnets/{subnet['id']}", {"subnet": {"name": "x"}}),
                ("DELETE", f"/v2.0/subnets/{subnet['id']}", None),
                ("POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "ip_version": 4,
                                                      "cidr": "10.6.0.0/24"}})):
            answer = await caller.call(method, url, json=body)
            assert answer.status_code == 403, (caller.name, method, url, answer.text)
    # Anyone may plug into it; the ports stay each project's own.
    alices = await alice.post("ports", "port", network_id=net["id"])
    bobs = await bob.post("ports", "port", network_id=net["id"])
    assert alices["project_id"] == alice.project_id
    assert await _ids(alice, "ports", network_id=net["id"]) == {alices["id"]}
    assert await _ids(bob, "ports", network_id=net["id"]) == {bobs["id"]}
    assert (await bob.call("GET", f"/v2.0/ports/{alices['id']}")).status_code == 404
    # A fixed address on someone else's network is its owner's to give.
    fixed = await alice.call("POST", "/v2.0/ports", json={"port": {
        "network_id": net["id"], "fixed_ips": [{"ip_address": "10.5.0.50"}]}})
    assert fixed.status_code == 403
    by_subnet = await alice.call("POST", "/v2.0/ports", json={"port": {
        "network_id": net["id"], "fixed_ips": [{"subnet_id": subnet["id"]}]}})
    assert by_subnet.status_code == 201, by_subnet.text


async def test_a_network_owner_sees_the_ports_on_its_network(cloud: Cloud) -> None:
    alice, bob, admin = cloud.alice, cloud.bob, cloud.admin
    net = await alice.post("networks", "network")
    await alice.post("subnets", "subnet", network_id=net["id"], ip_version=4, cidr="10.7.0.0/24")
    guest = await admin.post("ports", "port", network_id=net["id"], project_id=bob.project_id)
    assert guest["id"] in await _ids(alice, "ports")
    assert (await alice.call("GET", f"/v2.0/ports/{guest['id']}")).status_code == 200
    assert guest["id"] in await _ids(bob, "ports")
    # Bob owns the port, on a network he cannot see.
    assert net["id"] not in await _ids(bob, "networks")
    # The network owner may delete it (Neutron's admin_owner_or_network_owner), not rename it.
    renamed = await alice.call("PUT", f"/v2.0/ports/{guest['id']}", json={"port": {"name": "n"}})
    assert renamed.status_code == 403
    assert (await alice.call("DELETE", f"/v2.0/ports/{guest['id']}")).status_code == 204


async def test_only_the_admin_sees_agents(cloud: Cloud) -> None:
    await cloud.stack.register_agent("compute-1")
    agents = (await cloud.admin.call("GET", "/v2.0/agents")).json()["agents"]
    assert [a["host"] for a in agents] == ["compute-1"]
    for caller in (cloud.alice, cloud.bob):
        assert (await caller.call("GET", "/v2.0/agents")).json()["agents"] == []
        url = f"/v2.0/agents/{agents[0]['id']}"
        assert (await caller.call("GET", url)).status_code == 404
        assert (await caller.call("PUT", url, json={"agent": {"admin_state_up": False}})
                ).status_code == 404
        assert (await caller.call("DELETE", url)).status_code == 404
    assert (await cloud.admin.call("GET", f"/v2.0/agents/{agents[0]['id']}")).status_code == 200


async def test_default_security_groups_are_made_per_project_and_stay_private(
        cloud: Cloud) -> None:
    alice, bob = cloud.alice, cloud.bob
    alices = (await alice.call("GET", "/v2.0/security-groups")).json()["security_groups"]
    assert [g["name"] for g in alices] == ["default"]
    assert alices[0]["project_id"] == alice.project_id
    # Bob naming alice's project neither sees her group nor makes one for her.
    named = await bob.call("GET", "/v2.0/security-groups",
                           params={"project_id": alice.project_id})
    assert named.json()["security_groups"] == []
    bobs = (await bob.call("GET", "/v2.0/security-groups")).json()["security_groups"]
    assert [g["project_id"] for g in bobs] == [bob.project_id]
    rules = (await bob.call("GET", "/v2.0/security-group-rules")).json()
    assert {r["security_group_id"] for r in rules["security_group_rules"]} == {bobs[0]["id"]}
