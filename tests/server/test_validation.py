"""Input that used to corrupt state (issue 12.6): each refused with Neutron's 400 body,
leaving the database as it was; what is accepted is stored canonical and returned."""

from __future__ import annotations

from typing import Any

import httpx

from .helpers import Stack

COMPUTE = "compute:nova"


async def _snapshot(c: httpx.AsyncClient) -> dict[str, Any]:
    return {kind: (await c.get(f"/v2.0/{kind}")).json()[kind]
            for kind in ("networks", "subnets", "ports")}


class Api:
    """A network with a subnet, and helpers that check a refusal changed nothing."""

    def __init__(self, stack: Stack) -> None:
        self.c = stack.client
        self.net_id = ""
        self.sub_id = ""

    async def setup(self, cidr: str = "10.0.0.0/24", **subnet: Any) -> Api:
        net = await self.c.post("/v2.0/networks", json={"network": {}})
        self.net_id = net.json()["network"]["id"]
        sub = await self.subnet(cidr, **subnet)
        assert sub.status_code == 201, sub.text
        self.sub_id = sub.json()["subnet"]["id"]
        return self

    async def subnet(self, cidr: str, version: int = 4, **body: Any) -> httpx.Response:
        return await self.c.post("/v2.0/subnets", json={"subnet": {
            "network_id": self.net_id, "ip_version": version, "cidr": cidr, **body}})

    async def port(self, **body: Any) -> httpx.Response:
        return await self.c.post("/v2.0/ports", json={"port": {
            "network_id": self.net_id, "device_owner": COMPUTE, **body}})

    async def refused(self, method: str, path: str, body: Any, reason: str = "",
                      kind: str = "", status: int = 400) -> dict[str, Any]:
        before = await _snapshot(self.c)
        response = await self.c.request(method, path, json=body)
        assert response.status_code == status, (body, response.text)
        error = response.json()["NeutronError"]
        assert set(error) == {"type", "message", "detail"}, error
        assert reason in error["message"], (reason, error)
        assert not kind or error["type"] == kind, error
        assert await _snapshot(self.c) == before, body
        return error

    async def bad_port(self, reason: str = "", kind: str = "", status: int = 400,
                       **body: Any) -> None:
        await self.refused("POST", "/v2.0/ports", {"port": {
            "network_id": self.net_id, "device_owner": COMPUTE, **body}}, reason, kind, status)

    async def bad_subnet(self, cidr: str, reason: str = "", version: int = 4,
                         **body: Any) -> None:
        await self.refused("POST", "/v2.0/subnets", {"subnet": {
            "network_id": self.net_id, "ip_version": version, "cidr": cidr, **body}}, reason)


async def test_a_zoned_address_is_refused_not_given_again(stack: Stack) -> None:
    api = await Api(stack).setup()
    assert (await api.subnet("2001:db8:50::/64", 6)).status_code == 201
    first = await api.port(fixed_ips=[{"ip_address": "2001:DB8:50::0011"}])
    assert first.status_code == 201, first.text
    assert "2001:db8:50::11" in [ip["ip_address"] for ip in first.json()["port"]["fixed_ips"]]
    for zone in ("eth1", "eth2", "1"):
        await api.bad_port("is not a valid IP address",
                           fixed_ips=[{"ip_address": f"2001:db8:50::11%{zone}"}])
    await api.bad_port("is not a valid IP address",
                       fixed_ips=[{"ip_address": "2001:db8:50::12%eth1"}])
    taken = await api.port(fixed_ips=[{"ip_address": "2001:db8:50:0::11"}])
    assert taken.json()["NeutronError"]["type"] == "IpAddressInUse"
    await api.refused("POST", "/v2.0/subnets", {"subnet": {
        "network_id": api.net_id, "ip_version": 4, "cidr": "10.9.0.0/24",
        "dns_nameservers": ["fe80::1%eth0"]}}, "is not a valid nameserver")


async def test_macs_are_strict_and_unique_whatever_the_spelling(stack: Stack) -> None:
    api = await Api(stack).setup()
    assert (await api.port(mac_address="fa:16:3e:00:00:01")).status_code == 201
    await api.bad_port("is not a valid MAC address", mac_address="fa:16:3e:00:00:01\n")
    await api.bad_port("is not a valid MAC address", mac_address="fa:16:3e:00:00:02\n")
    await api.bad_port(kind="MacAddressInUse", status=409, mac_address="FA:16:3E:00:00:01")
    await api.bad_port("is not a valid MAC address", mac_address="00:00:00:00:00:00")
    await api.bad_port("is not a valid MAC address", mac_address="ff:ff:ff:ff:ff:ff")
    await api.bad_port("is a multicast address", mac_address="01:00:5e:00:00:fb")
    port = (await api.port()).json()["port"]
    await api.refused("PUT", f"/v2.0/ports/{port['id']}", {"port": {
        "mac_address": "33:33:00:00:00:01"}}, "is a multicast address")
    listed = (await api.c.get("/v2.0/ports?mac_address=FA:16:3E:00:00:01")).json()["ports"]
    assert [p["mac_address"] for p in listed] == ["fa:16:3e:00:00:01"]


async def test_network_broadcast_and_subnet_router_addresses_are_refused(stack: Stack) -> None:
    api = await Api(stack).setup()
    v6 = (await api.subnet("fd00:7::/64", 6)).json()["subnet"]
    for address, kind in (("10.0.0.0", "InvalidIpForNetwork"),
                          ("10.0.0.255", "InvalidIpForNetwork"),
                          ("fd00:7::", "InvalidIpForNetwork")):
        await api.bad_port("is not a valid IP", kind, fixed_ips=[{"ip_address": address}])
    for address, subnet in (("10.0.0.0", api.sub_id), ("10.0.0.255", api.sub_id),
                            ("fd00:7::", v6["id"])):
        await api.bad_port(kind="InvalidIpForSubnet",
                           fixed_ips=[{"subnet_id": subnet, "ip_address": address}])
    router = await api.port(device_owner="network:router_interface",
                            fixed_ips=[{"subnet_id": v6["id"], "ip_address": "fd00:7::"}])
    assert router.status_code == 201, router.text  # Neutron lets a router hold it
    await api.bad_subnet("10.1.0.0/24", "Gateway is not valid on subnet", gateway_ip="10.1.0.0")
    await api.bad_subnet("10.1.0.0/24", "Gateway is not valid on subnet",
                         gateway_ip="10.1.0.255")
    await api.bad_subnet("10.1.0.0/24", "spans beyond the subnet cidr",
                         allocation_pools=[{"start": "10.1.0.0", "end": "10.1.0.9"}])
    await api.bad_subnet("fd00:8::/64", "spans beyond the subnet cidr", version=6,
                         allocation_pools=[{"start": "fd00:8::", "end": "fd00:8::9"}])


async def test_at_most_five_fixed_ips_per_port(stack: Stack) -> None:
    api = await Api(stack).setup()
    six = [{"subnet_id": api.sub_id}] * 6
    await api.bad_port("Exceeded maximum amount of fixed ips per port", "InvalidInput",
                       fixed_ips=six)
    five = await api.port(fixed_ips=six[:5])
    assert five.status_code == 201, five.text
    assert len(five.json()["port"]["fixed_ips"]) == 5
    await api.refused("PUT", f"/v2.0/ports/{five.json()['port']['id']}",
                      {"port": {"fixed_ips": six}}, "Exceeded maximum amount of fixed ips")
    dhcp = await api.port(device_owner="network:dhcp", fixed_ips=six)
    assert dhcp.status_code == 201, dhcp.text  # Neutron trusts its own network: ports


async def test_allowed_address_pairs_are_validated_stored_and_returned(stack: Stack) -> None:
    api = await Api(stack).setup()
    created = await api.port(allowed_address_pairs=[
        {"ip_address": "10.0.0.200"},
        {"ip_address": "10.5.0.0/16", "mac_address": "FA:16:3E:AA:00:01"}])
    assert created.status_code == 201, created.text
    port = created.json()["port"]
    pairs = [{"ip_address": "10.0.0.200", "mac_address": port["mac_address"]},
             {"ip_address": "10.5.0.0/16", "mac_address": "fa:16:3e:aa:00:01"}]
    assert port["allowed_address_pairs"] == pairs
    shown = (await api.c.get(f"/v2.0/ports/{port['id']}")).json()["port"]
    assert shown["allowed_address_pairs"] == pairs
    for pairs_in, reason in (([{"ip_address": "10.0.0.5%eth0"}], "not a valid IP address"),
                             ([{"mac_address": "fa:16:3e:aa:00:02"}], "must contain ip_address"),
                             ([{"ip_address": "10.0.0.5", "mac_address": "fa:16:3e:aa"}],
                              "not a valid MAC address"),
                             ([{"ip_address": "224.0.0.1"}], "multicast"),
                             ({"ip_address": "10.0.0.5"}, "is not a list")):
        await api.bad_port(reason, allowed_address_pairs=pairs_in)
        await api.refused("PUT", f"/v2.0/ports/{port['id']}",
                          {"port": {"allowed_address_pairs": pairs_in}}, reason)
    await api.bad_port(kind="AddressPairAndPortSecurityRequired", status=409,
                       port_security_enabled=False,
                       allowed_address_pairs=[{"ip_address": "10.0.0.9"}])
    await api.refused("PUT", f"/v2.0/ports/{port['id']}",
                      {"port": {"port_security_enabled": False}},
                      kind="AddressPairAndPortSecurityRequired", status=409)
    cleared = await api.c.put(f"/v2.0/ports/{port['id']}", json={"port": {
        "allowed_address_pairs": [], "port_security_enabled": False}})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["port"]["allowed_address_pairs"] == []


async def test_host_routes_and_nameservers_are_validated(stack: Stack) -> None:
    api = await Api(stack).setup()
    route = {"destination": "10.8.0.0/16", "nexthop": "10.0.0.9"}
    for routes, reason in (([{"destination": "10.8.0.1/16", "nexthop": "10.0.0.9"}],
                            "is not a valid CIDR"),
                           ([{"destination": "10.8.0.0/16", "nexthop": "bogus"}],
                            "is not a valid IP address"),
                           ([{"destination": "10.8.0.0/16"}], "Invalid data format"),
                           ([route, route], "Duplicate hostroute"),
                           ([{"destination": "fd00::/64", "nexthop": "10.0.0.9"}],
                            "destination 'fd00::/64' does not match the ip_version '4'"),
                           ([{"destination": f"10.{i}.0.0/16", "nexthop": "10.0.0.9"}
                             for i in range(21)], "number of host routes exceeds the limit 20")):
        await api.bad_subnet("10.1.0.0/24", reason, host_routes=routes)
        await api.refused("PUT", f"/v2.0/subnets/{api.sub_id}",
                          {"subnet": {"host_routes": routes}}, reason)
    await api.bad_subnet("10.1.0.0/24", "number of DNS nameservers exceeds the limit 5",
                         dns_nameservers=[f"10.0.0.{i}" for i in range(2, 8)])
    await api.bad_subnet("10.1.0.0/24", "dns_nameserver 'fd00::53' does not match",
                         dns_nameservers=["fd00::53"])
    ok = await api.subnet("fd00:9::/64", 6, host_routes=[
        {"destination": "FD00:AA::/64", "nexthop": "FD00:9::1"}])
    assert ok.json()["subnet"]["host_routes"] == [
        {"destination": "fd00:aa::/64", "nexthop": "fd00:9::1"}]


async def test_ipv6_modes_take_neutrons_values_and_combinations(stack: Stack) -> None:
    api = await Api(stack).setup()
    v6 = "fd00:6::/64"
    await api.bad_subnet(v6, "is not in", 6, ipv6_ra_mode="bogus")
    await api.bad_subnet(v6, "is not in", 6, ipv6_address_mode="")
    await api.bad_subnet("10.1.0.0/24", "ipv6_ra_mode is not valid when ip_version is 4",
                         ipv6_ra_mode="slaac")
    await api.bad_subnet(v6, "they must be the same value", 6, ipv6_ra_mode="slaac",
                         ipv6_address_mode="dhcpv6-stateful")
    await api.bad_subnet(v6, "cannot be set when enable_dhcp is set to False", 6,
                         ipv6_address_mode="slaac", enable_dhcp=False)
    await api.bad_subnet("fd00:6::/80", "requires the prefix to be /64", 6,
                         ipv6_ra_mode="slaac")
    ok = await api.subnet(v6, 6, ipv6_ra_mode="dhcpv6-stateful",
                          ipv6_address_mode="dhcpv6-stateful")
    assert ok.status_code == 201, ok.text
    await api.refused("PUT", f"/v2.0/subnets/{ok.json()['subnet']['id']}",
                      {"subnet": {"enable_dhcp": False}},
                      "Cannot disable enable_dhcp with ipv6 attributes set")


async def test_segments_take_exact_values(stack: Stack) -> None:
    api = Api(stack)
    for body, reason in (({"provider:network_type": "vlan", "provider:segmentation_id": 1.5},
                          "'1.5' is not an integer"),
                         ({"provider:network_type": "vlan", "provider:segmentation_id": "12"},
                          "is not an integer"),
                         ({"provider:network_type": "vlan", "provider:segmentation_id": True},
                          "is not an integer"),
                         ({"provider:network_type": ""}, "network_type value '' not supported")):
        await api.refused("POST", "/v2.0/networks", {"network": body}, reason)
    whole = await api.c.post("/v2.0/networks", json={"network": {
        "provider:network_type": "vlan", "provider:segmentation_id": 12.0}})
    assert whole.json()["network"]["provider:segmentation_id"] == 12


async def test_invalid_subnet_cidrs(stack: Stack) -> None:
    api = await Api(stack).setup()
    for cidr, version, reason in (
            ("ff02::/16", 6, "Multicast IP subnet is not supported"),
            ("224.0.0.0/24", 4, "Multicast IP subnet is not supported"),
            ("127.0.0.0/24", 4, "Loopback IP subnet is not supported"),
            ("0.0.0.0/24", 4, "First IP '0.0.0.0' of network is not supported"),
            ("0.0.0.0/0", 4, "0 is not allowed as CIDR prefix length"),
            ("::/64", 6, "IPv6 subnet '::' is not supported"),
            ("fd00:1::/127", 6, "prefix length that is incompatible with DHCP"),
            ("10.3.0.0/31", 4, "prefix length that is incompatible with DHCP"),
            ("fd00:2::%eth0/64", 6, "is not a valid IP subnet"),
            ("10.3.0.0", 4, "is not a valid IP subnet")):
        await api.bad_subnet(cidr, reason, version)
    # Without DHCP Neutron takes a /127, whose one address is the gateway: an empty
    # pool, so a port asking for it is refused and no port gets the gateway.
    tiny = await api.subnet("fd00:1::/127", 6, enable_dhcp=False)
    assert tiny.status_code == 201, tiny.text
    assert tiny.json()["subnet"]["allocation_pools"] == []
    await api.bad_port(kind="IpAddressGenerationFailure", status=409,
                       fixed_ips=[{"subnet_id": tiny.json()["subnet"]["id"]}])
    off = (await api.subnet("224.1.0.0/24", enable_dhcp=False)).json()["subnet"]
    await api.refused("PUT", f"/v2.0/subnets/{off['id']}", {"subnet": {"enable_dhcp": True}},
                      "Multicast IP subnet is not supported")


async def test_junk_integers_in_headers_and_queries_are_a_400(stack: Stack) -> None:
    api = Api(stack)
    net = (await api.c.post("/v2.0/networks", json={"network": {}})).json()["network"]
    for header in ("revision_number=\u00b2".encode("latin-1"), b"revision_number=" + b"9" * 5000,
                   b"revision_number=-1", b"revision=1"):
        r = await api.c.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "x"}},
                            headers={"If-Match": header})
        assert r.status_code == 400, (header, r.text)
    for query in ("limit=1.5", "limit=1_0", "limit=%205", "limit=" + "9" * 5000,
                  "mtu=" + "9" * 5000, "revision_number=1.0"):
        r = await api.c.get(f"/v2.0/networks?{query}")
        assert r.status_code == 400, (query, r.text)
        assert r.json()["NeutronError"]["type"] == "HTTPBadRequest"
