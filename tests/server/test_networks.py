"""Networks and the API's metadata routes, through the real app."""

from __future__ import annotations

import re

from .helpers import Stack

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_versions_and_extensions(stack: Stack) -> None:
    root = (await stack.client.get("/")).json()
    assert root["versions"][0]["id"] == "v2.0"
    assert root["versions"][0]["status"] == "CURRENT"
    for path in ("/v2.0", "/v2.0/"):
        collections = {r["collection"] for r in (await stack.client.get(path)).json()["resources"]}
        assert {"networks", "subnets", "ports", "agents"} <= collections
    listed = (await stack.client.get("/v2.0/extensions")).json()["extensions"]
    aliases = {e["alias"] for e in listed}
    assert {"binding", "provider", "agent", "port-security"} <= aliases
    assert "router" not in aliases
    one = await stack.client.get("/v2.0/extensions/binding")
    assert one.json()["extension"]["alias"] == "binding"
    missing = await stack.client.get("/v2.0/extensions/router")
    assert missing.status_code == 404
    assert missing.json()["NeutronError"]["type"] == "ExtensionNotFound"


async def test_network_crud(stack: Stack) -> None:
    c = stack.client
    created = await c.post("/v2.0/networks", json={"network": {"name": "net1"}})
    assert created.status_code == 201, created.text
    net = created.json()["network"]
    assert net["name"] == "net1"
    assert net["status"] == "ACTIVE"
    assert net["admin_state_up"] is True
    assert net["shared"] is False
    assert net["subnets"] == []
    assert net["mtu"] == 1450
    assert net["port_security_enabled"] is True
    assert net["provider:network_type"] == "vxlan"
    assert net["provider:physical_network"] is None
    assert isinstance(net["provider:segmentation_id"], int)
    assert net["tenant_id"] == net["project_id"] and net["project_id"]
    assert net["revision_number"] == 1
    assert net["tags"] == []
    assert ISO.match(net["created_at"]) and ISO.match(net["updated_at"])

    shown = (await c.get(f"/v2.0/networks/{net['id']}")).json()["network"]
    assert shown == net
    fields = (await c.get(f"/v2.0/networks/{net['id']}?fields=id&fields=name")).json()
    assert fields == {"network": {"id": net["id"], "name": "net1"}}

    updated = await c.put(f"/v2.0/networks/{net['id']}",
                          json={"network": {"name": "renamed", "admin_state_up": False}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["network"]["name"] == "renamed"
    assert updated.json()["network"]["admin_state_up"] is False
    assert updated.json()["network"]["revision_number"] == 2

    assert (await c.delete(f"/v2.0/networks/{net['id']}")).status_code == 204
    gone = await c.get(f"/v2.0/networks/{net['id']}")
    assert gone.status_code == 404
    assert gone.json() == {"NeutronError": {
        "type": "NetworkNotFound", "message": f"Network {net['id']} could not be found.",
        "detail": ""}}


async def test_network_bulk_filters_and_fields(stack: Stack) -> None:
    c = stack.client
    bulk = await c.post("/v2.0/networks", json={"networks": [
        {"name": "a"}, {"name": "b", "shared": True}, {"name": "c"}]})
    assert bulk.status_code == 201, bulk.text
    nets = bulk.json()["networks"]
    assert [n["name"] for n in nets] == ["a", "b", "c"]
    assert len({n["provider:segmentation_id"] for n in nets}) == 3

    listed = (await c.get("/v2.0/networks")).json()["networks"]
    assert {n["name"] for n in listed} == {"a", "b", "c"}
    by_id = (await c.get(f"/v2.0/networks?id={nets[0]['id']}&id={nets[2]['id']}")).json()
    assert sorted(n["name"] for n in by_id["networks"]) == ["a", "c"]
    shared = (await c.get("/v2.0/networks?shared=true&fields=name")).json()
    assert shared == {"networks": [{"name": "b"}]}
    none = (await c.get("/v2.0/networks?name=zzz")).json()
    assert none == {"networks": []}


async def test_network_bulk_is_all_or_nothing(stack: Stack) -> None:
    c = stack.client
    bad = await c.post("/v2.0/networks", json={"networks": [
        {"name": "ok"}, {"name": "bad", "provider:network_type": "vlan",
                         "provider:segmentation_id": 5000}]})
    assert bad.status_code == 400
    assert (await c.get("/v2.0/networks")).json() == {"networks": []}


async def test_provider_segments(stack: Stack) -> None:
    c = stack.client
    vlan = (await c.post("/v2.0/networks", json={"network": {
        "provider:network_type": "vlan", "provider:segmentation_id": 100}})).json()["network"]
    assert vlan["provider:physical_network"] == "physnet1"
    assert vlan["provider:segmentation_id"] == 100
    assert vlan["mtu"] == 1500
    taken = await c.post("/v2.0/networks", json={"network": {
        "provider:network_type": "vlan", "provider:physical_network": "physnet1",
        "provider:segmentation_id": 100}})
    assert taken.status_code == 409
    assert taken.json()["NeutronError"]["type"] == "SegmentationIdInUse"
    other_physnet = await c.post("/v2.0/networks", json={"network": {
        "provider:network_type": "vlan", "provider:physical_network": "physnet2",
        "provider:segmentation_id": 100}})
    assert other_physnet.status_code == 201
    vx = (await c.post("/v2.0/networks", json={"network": {
        "provider:network_type": "vxlan", "provider:segmentation_id": 100}}))
    assert vx.status_code == 201  # a VNI does not collide with a VLAN id
    dup_vx = await c.post("/v2.0/networks", json={"network": {
        "provider:network_type": "vxlan", "provider:segmentation_id": 100}})
    assert dup_vx.status_code == 409
    flat = (await c.post("/v2.0/networks", json={"network": {
        "provider:network_type": "flat"}})).json()["network"]
    assert flat["provider:segmentation_id"] is None
    assert flat["mtu"] == 1500
    bogus = await c.post("/v2.0/networks", json={"network": {"provider:network_type": "gre2"}})
    assert bogus.status_code == 400
    filtered = (await c.get("/v2.0/networks?provider:network_type=vlan")).json()["networks"]
    assert len(filtered) == 2


async def test_network_in_use(stack: Stack) -> None:
    c = stack.client
    net = (await c.post("/v2.0/networks", json={"network": {}})).json()["network"]
    port = (await c.post("/v2.0/ports", json={"port": {"network_id": net["id"]}})).json()["port"]
    busy = await c.delete(f"/v2.0/networks/{net['id']}")
    assert busy.status_code == 409
    assert busy.json()["NeutronError"]["type"] == "NetworkInUse"
    assert (await c.delete(f"/v2.0/ports/{port['id']}")).status_code == 204
    assert (await c.delete(f"/v2.0/networks/{net['id']}")).status_code == 204
