"""Subnets, ports and IPAM through the HTTP API."""

from __future__ import annotations

import asyncio
from typing import Any

from .helpers import Stack


async def _net(stack: Stack, cidr: str | None = "10.0.0.0/24", **subnet: Any) -> tuple[str, str]:
    net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
    sub = await stack.client.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": cidr, **subnet}})
    assert sub.status_code == 201, sub.text
    return net["id"], sub.json()["subnet"]["id"]


async def test_subnet_defaults_and_crud(stack: Stack) -> None:
    c = stack.client
    net_id, sub_id = await _net(stack)
    sub = (await c.get(f"/v2.0/subnets/{sub_id}")).json()["subnet"]
    assert sub["cidr"] == "10.0.0.0/24"
    assert sub["gateway_ip"] == "10.0.0.1"
    assert sub["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert sub["enable_dhcp"] is True
    assert sub["dns_nameservers"] == [] and sub["host_routes"] == []
    net = (await c.get(f"/v2.0/networks/{net_id}")).json()["network"]
    assert net["subnets"] == [sub_id]
    v6 = await c.post("/v2.0/subnets", json={"subnet": {
        "network_id": net_id, "ip_version": 6, "cidr": "fd00:1::/64"}})
    assert v6.status_code == 201, v6.text
    assert v6.json()["subnet"]["gateway_ip"] == "fd00:1::1"
    upd = await c.put(f"/v2.0/subnets/{sub_id}", json={"subnet": {
        "name": "s", "dns_nameservers": ["8.8.8.8"]}})
    assert upd.json()["subnet"]["dns_nameservers"] == ["8.8.8.8"]
    only_v4 = (await c.get(f"/v2.0/subnets?network_id={net_id}&ip_version=4")).json()
    assert [s["id"] for s in only_v4["subnets"]] == [sub_id]
    assert (await c.delete(f"/v2.0/subnets/{sub_id}")).status_code == 204
    assert (await c.get(f"/v2.0/subnets/{sub_id}")).json()["NeutronError"]["type"] == \
        "SubnetNotFound"


async def test_subnet_validation(stack: Stack) -> None:
    c = stack.client
    net_id, _ = await _net(stack)

    async def bad(status: int, **body: Any) -> dict[str, Any]:
        r = await c.post("/v2.0/subnets", json={"subnet": {
            "network_id": net_id, "ip_version": 4, **body}})
        assert r.status_code == status, r.text
        return r.json()["NeutronError"]

    assert "10.1.0.0/24" in (await bad(400, cidr="10.1.0.5/24"))["message"]
    await bad(400, cidr="not-a-cidr")
    await bad(400, cidr="10.0.0.128/25")  # overlaps the first subnet
    await bad(400, cidr="10.2.0.0/24", allocation_pools=[{"start": "10.3.0.2",
                                                          "end": "10.3.0.9"}])
    await bad(400, cidr="10.2.0.0/24", allocation_pools=[
        {"start": "10.2.0.2", "end": "10.2.0.9"}, {"start": "10.2.0.5", "end": "10.2.0.20"}])
    await bad(400, cidr="10.2.0.0/24", gateway_ip="10.2.0.5",
              allocation_pools=[{"start": "10.2.0.2", "end": "10.2.0.9"}])
    await bad(400, cidr="fd00::/64")  # version mismatch
    r = await c.post("/v2.0/subnets", json={"subnet": {
        "network_id": "0c8e2c5b-6f1c-4e55-9a3c-0b1d3e0f0a11", "ip_version": 4,
        "cidr": "10.9.0.0/24"}})
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "NetworkNotFound"
    nogw = await c.post("/v2.0/subnets", json={"subnet": {
        "network_id": net_id, "ip_version": 4, "cidr": "10.5.0.0/29", "gateway_ip": None}})
    assert nogw.json()["subnet"]["gateway_ip"] is None
    assert nogw.json()["subnet"]["allocation_pools"] == [{"start": "10.5.0.1",
                                                          "end": "10.5.0.6"}]


async def test_port_defaults_and_crud(stack: Stack) -> None:
    c = stack.client
    # Automatic addresses are random (as Neutron's): keep the ones this test asks
    # for by hand (.50, .77) out of the pool, so no automatic port can hold them.
    net_id, sub_id = await _net(stack, allocation_pools=[{"start": "10.0.0.2",
                                                         "end": "10.0.0.40"}])
    r = await c.post("/v2.0/ports", json={"port": {
        "network_id": net_id, "device_id": "vm-1", "device_owner": "compute:nova"}})
    assert r.status_code == 201, r.text
    port = r.json()["port"]
    assert port["status"] == "DOWN"
    assert port["mac_address"].startswith("fa:16:3e:") and len(port["mac_address"]) == 17
    assert len(port["fixed_ips"]) == 1 and port["fixed_ips"][0]["subnet_id"] == sub_id
    assert port["fixed_ips"][0]["ip_address"].startswith("10.0.0.")
    assert port["fixed_ips"][0]["ip_address"] != "10.0.0.1"
    assert port["binding:vif_type"] == "unbound"
    assert port["binding:vif_details"] == {} and port["binding:profile"] == {}
    assert port["binding:vnic_type"] == "normal" and port["binding:host_id"] == ""
    assert port["security_groups"] == [] and port["allowed_address_pairs"] == []
    assert port["port_security_enabled"] is True

    fixed = await c.post("/v2.0/ports", json={"port": {
        "network_id": net_id, "fixed_ips": [{"ip_address": "10.0.0.50"}],
        "mac_address": "FA:16:3E:00:00:01"}})
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["port"]["fixed_ips"] == [{"subnet_id": sub_id,
                                                  "ip_address": "10.0.0.50"}]
    assert fixed.json()["port"]["mac_address"] == "fa:16:3e:00:00:01"

    async def conflict(kind: str, **body: Any) -> None:
        r = await c.post("/v2.0/ports", json={"port": {"network_id": net_id, **body}})
        assert r.status_code == 409, r.text
        assert r.json()["NeutronError"]["type"] == kind

    await conflict("IpAddressInUse", fixed_ips=[{"subnet_id": sub_id,
                                                 "ip_address": "10.0.0.50"}])
    await conflict("MacAddressInUse", mac_address="fa:16:3e:00:00:01")
    outside = await c.post("/v2.0/ports", json={"port": {
        "network_id": net_id, "fixed_ips": [{"subnet_id": sub_id, "ip_address": "10.7.0.5"}]}})
    assert outside.status_code == 400
    assert outside.json()["NeutronError"]["type"] == "InvalidIpForSubnet"

    by_device = (await c.get("/v2.0/ports?device_id=vm-1")).json()["ports"]
    assert [p["id"] for p in by_device] == [port["id"]]
    by_ip = (await c.get("/v2.0/ports?fixed_ips=ip_address%3D10.0.0.50")).json()["ports"]
    assert [p["id"] for p in by_ip] == [fixed.json()["port"]["id"]]
    both = (await c.get(f"/v2.0/ports?id={port['id']}&id={by_ip[0]['id']}&fields=id")).json()
    assert sorted(p["id"] for p in both["ports"]) == sorted([port["id"], by_ip[0]["id"]])
    assert all(set(p) == {"id"} for p in both["ports"])

    upd = await c.put(f"/v2.0/ports/{port['id']}", json={"port": {
        "name": "p", "fixed_ips": [{"ip_address": "10.0.0.77"}]}})
    assert upd.status_code == 200, upd.text
    assert upd.json()["port"]["fixed_ips"][0]["ip_address"] == "10.0.0.77"
    assert upd.json()["port"]["revision_number"] == 2
    stale = await c.put(f"/v2.0/ports/{port['id']}", json={"port": {"name": "x"}},
                        headers={"If-Match": "revision_number=1"})
    assert stale.status_code == 412
    assert (await c.delete(f"/v2.0/ports/{port['id']}")).status_code == 204
    assert (await c.get(f"/v2.0/ports/{port['id']}")).json()["NeutronError"]["type"] == \
        "PortNotFound"
    again = await c.post("/v2.0/ports", json={"port": {
        "network_id": net_id, "fixed_ips": [{"ip_address": "10.0.0.77"}]}})
    assert again.status_code == 201  # released on delete


async def test_port_bulk_and_exhaustion(stack: Stack) -> None:
    c = stack.client
    net_id, _ = await _net(stack, cidr="10.0.0.0/29")  # 5 usable addresses
    bulk = await c.post("/v2.0/ports", json={"ports": [{"network_id": net_id}] * 5})
    assert bulk.status_code == 201, bulk.text
    ips = {p["fixed_ips"][0]["ip_address"] for p in bulk.json()["ports"]}
    assert ips == {f"10.0.0.{i}" for i in range(2, 7)}
    full = await c.post("/v2.0/ports", json={"port": {"network_id": net_id}})
    assert full.status_code == 409
    assert full.json()["NeutronError"]["type"] == "IpAddressGenerationFailure"
    count = len((await c.get("/v2.0/ports")).json()["ports"])
    failed_bulk = await c.post("/v2.0/ports", json={"ports": [{"network_id": net_id}]})
    assert failed_bulk.status_code == 409
    assert len((await c.get("/v2.0/ports")).json()["ports"]) == count


async def test_dual_stack_port(stack: Stack) -> None:
    c = stack.client
    net_id, sub4 = await _net(stack)
    sub6 = (await c.post("/v2.0/subnets", json={"subnet": {
        "network_id": net_id, "ip_version": 6, "cidr": "fd00::/64"}})).json()["subnet"]["id"]
    port = (await c.post("/v2.0/ports", json={"port": {"network_id": net_id}})).json()["port"]
    assert [ip["subnet_id"] for ip in port["fixed_ips"]] == [sub4, sub6]


async def test_concurrent_creates_never_share_an_address(stack: Stack) -> None:
    net_id, _ = await _net(stack, cidr="10.0.0.0/24")

    async def create() -> dict[str, Any]:
        r = await stack.client.post("/v2.0/ports", json={"port": {"network_id": net_id}})
        assert r.status_code == 201, r.text
        return r.json()["port"]

    created = await asyncio.gather(*(create() for _ in range(100)))
    ips = [p["fixed_ips"][0]["ip_address"] for p in created]
    assert len(set(ips)) == 100
    listed = (await stack.client.get(f"/v2.0/ports?network_id={net_id}")).json()["ports"]
    assert len({p["fixed_ips"][0]["ip_address"] for p in listed}) == 100


async def test_a_full_subnet_moves_allocation_to_the_next(stack: Stack) -> None:
    """Issue 12.7: Neutron tries each subnet of a version in turn."""
    c = stack.client
    net_id, small = await _net(stack, cidr="10.0.0.0/29")  # 5 usable addresses
    big = (await c.post("/v2.0/subnets", json={"subnet": {
        "network_id": net_id, "ip_version": 4, "cidr": "10.1.0.0/24"}})).json()["subnet"]
    first = await c.post("/v2.0/ports", json={"ports": [{"network_id": net_id}] * 5})
    assert {p["fixed_ips"][0]["subnet_id"] for p in first.json()["ports"]} == {small}
    more = await c.post("/v2.0/ports", json={"ports": [{"network_id": net_id}] * 20})
    assert more.status_code == 201, more.text
    ips = [p["fixed_ips"] for p in more.json()["ports"]]
    assert all(len(f) == 1 and f[0]["subnet_id"] == big["id"] for f in ips)
    assert len({f[0]["ip_address"] for f in ips}) == 20
    pinned = await c.post("/v2.0/ports", json={"port": {
        "network_id": net_id, "fixed_ips": [{"subnet_id": small}]}})
    assert pinned.status_code == 409  # a named subnet is that subnet only
    assert pinned.json()["NeutronError"]["type"] == "IpAddressGenerationFailure"
