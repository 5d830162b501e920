"""The extensions Tempest's network tests use, over HTTP, in Neutron's shapes:
external-net, net-mtu-writable, extra_dhcp_opt, ip-substring-filtering, subnet
pools (subnet_allocation, default-subnetpools), network-ip-availability,
service-type, dhcp_agent_scheduler, and SLAAC subnets deleted under their ports."""

from __future__ import annotations

from typing import Any

from server.helpers import Stack

ALIASES = {"external-net", "quotas", "quota_details", "quota-check-limit", "extra_dhcp_opt",
           "ip-substring-filtering", "subnet_allocation", "default-subnetpools",
           "service-type", "network-ip-availability", "empty-string-filtering",
           "net-mtu-writable", "dhcp_agent_scheduler"}


async def _post(stack: Stack, member: str, status: int = 201, **body: Any) -> Any:
    collection = {"subnetpool": "subnetpools"}.get(member, member + "s")
    answer = await stack.client.post(f"/v2.0/{collection}", json={member: body})
    assert answer.status_code == status, answer.text
    return answer.json()[member] if status == 201 else answer.json()["NeutronError"]


async def _put(stack: Stack, member: str, item_id: str, status: int = 200, **body: Any) -> Any:
    collection = {"subnetpool": "subnetpools"}.get(member, member + "s")
    answer = await stack.client.put(f"/v2.0/{collection}/{item_id}", json={member: body})
    assert answer.status_code == status, answer.text
    return answer.json()[member] if status == 200 else answer.json()["NeutronError"]


async def test_the_extensions_are_advertised_and_shown(stack: Stack) -> None:
    listed = {e["alias"] for e in (await stack.client.get("/v2.0/extensions")).json()[
        "extensions"]}
    assert listed >= ALIASES
    shown = (await stack.client.get("/v2.0/extensions/quota_details")).json()["extension"]
    assert shown["alias"] == "quota_details" and "updated" in shown


async def test_router_external_is_set_updated_and_filtered(stack: Stack) -> None:
    external = await _post(stack, "network", **{"router:external": True})
    plain = await _post(stack, "network")
    assert external["router:external"] is True and plain["router:external"] is False
    listed = (await stack.client.get("/v2.0/networks", params={"router:external": "true"})
              ).json()["networks"]
    assert [n["id"] for n in listed] == [external["id"]]
    assert (await _put(stack, "network", plain["id"], **{"router:external": True}))[
        "router:external"] is True


async def test_mtu_is_writable_up_to_the_segments(stack: Stack) -> None:
    net = await _post(stack, "network", mtu=1400)
    assert net["mtu"] == 1400
    assert (await _put(stack, "network", net["id"], mtu=1450))["mtu"] == 1450
    fault = await _put(stack, "network", net["id"], 400, mtu=9000)
    assert fault["message"] == "Invalid input for operation: Requested MTU is too big, " \
                               "maximum is 1450."
    assert (await _post(stack, "network", 400, mtu=20))["type"] == "InvalidInput"


async def test_extra_dhcp_opts_are_stored_merged_and_validated(stack: Stack) -> None:
    net = await _post(stack, "network")
    opts = [{"opt_name": "bootfile-name", "opt_value": "pxelinux.0"},
            {"opt_name": "tftp-server", "opt_value": "2015::dead", "ip_version": 6}]
    port = await _post(stack, "port", network_id=net["id"], extra_dhcp_opts=opts)
    assert port["extra_dhcp_opts"] == [
        {"opt_name": "bootfile-name", "opt_value": "pxelinux.0", "ip_version": 4},
        {"opt_name": "tftp-server", "opt_value": "2015::dead", "ip_version": 6}]
    listed = (await stack.client.get("/v2.0/ports")).json()["ports"]
    assert listed[0]["extra_dhcp_opts"] == port["extra_dhcp_opts"]
    # Update merges by name and version; a None value removes that option.
    updated = await _put(stack, "port", port["id"], extra_dhcp_opts=[
        {"opt_name": "bootfile-name", "opt_value": "grub.efi"},
        {"opt_name": "tftp-server", "opt_value": None, "ip_version": 6},
        {"opt_name": "server-ip-address", "opt_value": "10.0.0.2"}])
    assert sorted((o["opt_name"], o["opt_value"]) for o in updated["extra_dhcp_opts"]) == [
        ("bootfile-name", "grub.efi"), ("server-ip-address", "10.0.0.2")]
    shown = (await stack.client.get(f"/v2.0/ports/{port['id']}")).json()["port"]
    assert shown["extra_dhcp_opts"] == updated["extra_dhcp_opts"]
    plain = await _post(stack, "port", network_id=net["id"])
    assert plain["extra_dhcp_opts"] == []
    for bad in ([{"opt_value": "x"}], [{"opt_name": "a", "ip_version": 5}],
                [{"opt_name": "a", "opt_value": "x", "color": "red"}], "x"):
        fault = await _post(stack, "port", 400, network_id=net["id"], extra_dhcp_opts=bad)
        assert fault["message"].startswith("Invalid input for extra_dhcp_opts"), fault


async def test_ports_filter_on_an_address_substring(stack: Stack) -> None:
    net = await _post(stack, "network")
    subnet = await _post(stack, "subnet", network_id=net["id"], ip_version=4,
                         cidr="10.20.0.0/24")
    one = await _post(stack, "port", network_id=net["id"], fixed_ips=[
        {"subnet_id": subnet["id"], "ip_address": "10.20.0.15"}])
    two = await _post(stack, "port", network_id=net["id"], fixed_ips=[
        {"subnet_id": subnet["id"], "ip_address": "10.20.0.27"}])

    async def ids(*substrings: str) -> set[str]:
        params = [("fixed_ips", f"ip_address_substr={s}") for s in substrings]
        answer = await stack.client.get("/v2.0/ports", params=params)
        assert answer.status_code == 200, answer.text
        return {p["id"] for p in answer.json()["ports"]}
    assert await ids("10.20.0.1") == {one["id"]}
    assert await ids("10.20.0.") == {one["id"], two["id"]}
    assert await ids("0.1", "0.2") == {one["id"], two["id"]}
    assert await ids("%") == set()  # no wildcard: the text itself


async def test_subnet_pools_crud_and_subnets_carved_from_them(stack: Stack) -> None:
    pool = await _post(stack, "subnetpool", name="p", prefixes=["10.100.0.0/16"],
                       default_prefixlen=24)
    assert (pool["ip_version"], pool["min_prefixlen"], pool["max_prefixlen"]) == (4, 8, 32)
    assert pool["prefixes"] == ["10.100.0.0/16"] and pool["is_default"] is False
    net = await _post(stack, "network")
    first = await _post(stack, "subnet", network_id=net["id"], ip_version=4,
                        subnetpool_id=pool["id"])
    second = await _post(stack, "subnet", network_id=net["id"], ip_version=4,
                         subnetpool_id=pool["id"], prefixlen=28)
    assert (first["cidr"], second["cidr"]) == ("10.100.0.0/24", "10.100.1.0/28")
    assert first["subnetpool_id"] == pool["id"]
    outside = await _post(stack, "subnet", 400, network_id=net["id"], ip_version=4,
                          subnetpool_id=pool["id"], cidr="192.168.0.0/24")
    assert "not within the prefixes" in outside["message"]
    assert (await _post(stack, "subnet", 400, network_id=net["id"], ip_version=4))[
        "message"].startswith("Bad subnets request")
    renamed = await _put(stack, "subnetpool", pool["id"], name="q",
                         prefixes=["10.100.0.0/16", "10.101.0.0/16"])
    assert renamed["name"] == "q" and renamed["prefixes"] == ["10.100.0.0/15"]
    shrink = await _put(stack, "subnetpool", pool["id"], 400, prefixes=["10.100.0.0/24"])
    assert "subset" in shrink["message"]
    in_use = await stack.client.delete(f"/v2.0/subnetpools/{pool['id']}")
    assert in_use.status_code == 409 and in_use.json()["NeutronError"]["type"] == \
        "SubnetPoolInUse"
    for subnet in (first, second):
        assert (await stack.client.delete(f"/v2.0/subnets/{subnet['id']}")).status_code == 204
    assert (await stack.client.delete(f"/v2.0/subnetpools/{pool['id']}")).status_code == 204
    gone = await stack.client.get(f"/v2.0/subnetpools/{pool['id']}")
    assert gone.status_code == 404 and gone.json()["NeutronError"]["type"] == \
        "SubnetPoolNotFound"


async def test_the_default_pool_serves_use_default_subnetpool(stack: Stack) -> None:
    await _post(stack, "subnetpool", prefixes=["2001:db8::/48"], is_default=True)
    assert (await _post(stack, "subnetpool", 400, prefixes=["2001:db9::/48"],
                        is_default=True))["type"] == "InvalidInput"
    net = await _post(stack, "network")
    subnet = await _post(stack, "subnet", network_id=net["id"], ip_version=6,
                         use_default_subnetpool=True)
    assert subnet["cidr"] == "2001:db8::/64"
    fault = await _post(stack, "subnet", 400, network_id=net["id"], ip_version=4,
                        use_default_subnetpool=True)
    assert fault["message"] == "No default subnetpool found for IPv4"


async def test_network_ip_availability_counts_pools_and_allocations(stack: Stack) -> None:
    net = await _post(stack, "network", name="avail")
    subnet = await _post(stack, "subnet", network_id=net["id"], ip_version=4,
                         cidr="10.9.0.0/28")
    for _ in range(3):
        await _post(stack, "port", network_id=net["id"])
    shown = (await stack.client.get(f"/v2.0/network-ip-availabilities/{net['id']}")
             ).json()["network_ip_availability"]
    assert (shown["network_name"], shown["total_ips"], shown["used_ips"]) == ("avail", 13, 3)
    assert shown["subnet_ip_availability"] == [{
        "subnet_id": subnet["id"], "subnet_name": "", "cidr": "10.9.0.0/28", "ip_version": 4,
        "total_ips": 13, "used_ips": 3}]
    listed = (await stack.client.get("/v2.0/network-ip-availabilities",
                                     params={"network_name": "avail"})).json()
    assert [a["network_id"] for a in listed["network_ip_availabilities"]] == [net["id"]]
    missing = await stack.client.get("/v2.0/network-ip-availabilities/" + "0" * 32)
    assert missing.status_code == 404


async def test_service_providers_and_dhcp_agents_are_empty_lists(stack: Stack) -> None:
    assert (await stack.client.get("/v2.0/service-providers")).json() == {
        "service_providers": []}
    net = await _post(stack, "network")
    assert (await stack.client.get(f"/v2.0/networks/{net['id']}/dhcp-agents")).json() == {
        "agents": []}
    assert (await stack.client.get("/v2.0/networks/nope/dhcp-agents")).status_code == 404


async def test_a_slaac_subnet_goes_with_its_ports_addresses(stack: Stack) -> None:
    net = await _post(stack, "network")
    v4 = await _post(stack, "subnet", network_id=net["id"], ip_version=4, cidr="10.7.0.0/24")
    slaac = await _post(stack, "subnet", network_id=net["id"], ip_version=6,
                        cidr="2001:db8:7::/64", ipv6_ra_mode="slaac",
                        ipv6_address_mode="slaac")
    port = await _post(stack, "port", network_id=net["id"])
    assert {ip["subnet_id"] for ip in port["fixed_ips"]} == {v4["id"], slaac["id"]}
    assert (await stack.client.delete(f"/v2.0/subnets/{slaac['id']}")).status_code == 204
    shown = (await stack.client.get(f"/v2.0/ports/{port['id']}")).json()["port"]
    assert [ip["subnet_id"] for ip in shown["fixed_ips"]] == [v4["id"]]
    # A subnet with static addresses still refuses while a port holds one.
    in_use = await stack.client.delete(f"/v2.0/subnets/{v4['id']}")
    assert in_use.status_code == 409
    assert (await stack.client.delete(f"/v2.0/networks/{net['id']}")).status_code == 409


async def test_an_empty_string_filters_for_empty_values(stack: Stack) -> None:
    unnamed = await _post(stack, "network")
    await _post(stack, "network", name="named")
    listed = (await stack.client.get("/v2.0/networks?name=")).json()["networks"]
    assert [n["id"] for n in listed] == [unnamed["id"]]
