"""List conventions: filters, fields, sorting, pagination with links, bulk and If-Match."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from server.helpers import Stack


async def _networks(stack: Stack, names: list[str]) -> list[dict]:
    body = {"networks": [{"name": n, "shared": n.endswith("s")} for n in names]}
    response = await stack.client.post("/v2.0/networks", json=body)
    assert response.status_code == 201, response.text
    return response.json()["networks"]


async def test_filters_fields_and_validation(stack: Stack) -> None:
    c = stack.client
    a, b, _ = await _networks(stack, ["a", "bs", "c"])
    got = (await c.get(f"/v2.0/networks?id={a['id']}&id={b['id']}&fields=name")).json()
    assert sorted(n["name"] for n in got["networks"]) == ["a", "bs"]
    assert all(set(n) == {"name"} for n in got["networks"])
    shared = (await c.get("/v2.0/networks?shared=True&fields=id,name")).json()["networks"]
    assert shared == [{"id": b["id"], "name": "bs"}]
    for query, message in (("bogus=1", "[bogus] is invalid attribute for filtering"),
                           ("shared=maybe", "Invalid input for shared"),
                           ("mtu=abc", "Invalid input for mtu"),
                           ("mtu=99999999999999", "out of range")):
        response = await c.get(f"/v2.0/networks?{query}")
        assert response.status_code == 400, query
        error = response.json()["NeutronError"]
        assert message in error["message"] and error["type"] == "HTTPBadRequest"
    assert (await c.get("/v2.0/networks?mtu=1450")).json()["networks"]


async def test_sorting(stack: Stack) -> None:
    c = stack.client
    await _networks(stack, ["b", "a", "cs", "as"])

    async def names(query: str) -> list[str]:
        response = await c.get(f"/v2.0/networks?{query}")
        assert response.status_code == 200, response.text
        return [n["name"] for n in response.json()["networks"]]

    assert await names("sort_key=name") == ["a", "as", "b", "cs"]
    assert await names("sort_key=name&sort_dir=desc") == ["cs", "b", "as", "a"]
    assert await names("sort_key=shared&sort_dir=desc&sort_key=name&sort_dir=asc") == [
        "as", "cs", "a", "b"]
    for bad in ("sort_key=subnets", "sort_key=nope", "sort_key=name&sort_dir=up",
                "sort_key=name&sort_key=id&sort_dir=asc"):
        response = await c.get(f"/v2.0/networks?{bad}")
        assert response.status_code == 400, bad
        assert response.json()["NeutronError"]["message"]


async def test_pagination_and_links(stack: Stack) -> None:
    c = stack.client
    created = await _networks(stack, [f"n{i}" for i in range(5)])
    by_id = sorted(n["id"] for n in created)

    first = (await c.get("/v2.0/networks?limit=2&fields=id")).json()
    assert [n["id"] for n in first["networks"]] == by_id[:2]
    links = {link["rel"]: link["href"] for link in first["networks_links"]}
    assert set(links) == {"next"}
    assert parse_qs(urlsplit(links["next"]).query)["marker"] == [by_id[1]]

    seen, url = [], "/v2.0/networks?limit=2"
    while url:
        page = (await c.get(url)).json()
        seen += [n["id"] for n in page["networks"]]
        nxt = [lk["href"] for lk in page["networks_links"] if lk["rel"] == "next"]
        url = nxt[0] if nxt and page["networks"] else ""
    assert seen == by_id

    back = (await c.get(f"/v2.0/networks?limit=2&marker={by_id[3]}&page_reverse=True")).json()
    assert [n["id"] for n in back["networks"]] == by_id[1:3]
    assert {lk["rel"] for lk in back["networks_links"]} == {"next", "previous"}
    last = (await c.get("/v2.0/networks?limit=2&page_reverse=true")).json()
    assert [n["id"] for n in last["networks"]] == by_id[3:]

    by_name = (await c.get(f"/v2.0/networks?limit=2&sort_key=name&sort_dir=desc"
                           f"&marker={created[3]['id']}")).json()
    assert [n["name"] for n in by_name["networks"]] == ["n2", "n1"]
    unknown = await c.get("/v2.0/networks?limit=1&marker=00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 404
    assert unknown.json()["NeutronError"]["type"] == "NetworkNotFound"
    for bad in ("limit=-1", "limit=x", "limit=1&page_reverse=sideways"):
        assert (await c.get(f"/v2.0/networks?{bad}")).status_code == 400, bad
    unlimited = (await c.get("/v2.0/networks?limit=0")).json()
    assert len(unlimited["networks"]) == 5 and "networks_links" not in unlimited


async def test_bulk_create_is_all_or_nothing(stack: Stack) -> None:
    c = stack.client
    net = (await _networks(stack, ["net"]))[0]
    subnet = (await c.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}})).json()["subnet"]
    ports = [{"network_id": net["id"], "fixed_ips": [{"ip_address": "10.0.0.5"}]},
             {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.0.0.5"}]}]
    conflict = await c.post("/v2.0/ports", json={"ports": ports})
    assert conflict.status_code == 409
    assert conflict.json()["NeutronError"]["type"] == "IpAddressInUse"
    invalid = await c.post("/v2.0/ports", json={"ports": [
        {"network_id": net["id"]}, {"network_id": net["id"], "mac_address": "nope"}]})
    assert invalid.status_code == 400
    assert (await c.get("/v2.0/ports")).json()["ports"] == []
    empty = await c.post("/v2.0/ports", json={"ports": []})
    assert empty.status_code == 400
    ok = await c.post("/v2.0/ports", json={"ports": [
        {"network_id": net["id"], "name": "p1"}, {"network_id": net["id"], "name": "p2"}]})
    assert ok.status_code == 201
    assert [p["name"] for p in ok.json()["ports"]] == ["p1", "p2"]
    assert all(p["fixed_ips"][0]["subnet_id"] == subnet["id"] for p in ok.json()["ports"])


async def test_if_match_on_update_and_delete(stack: Stack) -> None:
    c = stack.client
    net = (await _networks(stack, ["net"]))[0]
    path = f"/v2.0/networks/{net['id']}"
    stale = await c.put(path, json={"network": {"name": "x"}},
                        headers={"If-Match": "revision_number=7"})
    assert stale.status_code == 412
    assert stale.json()["NeutronError"]["type"] == "RevisionNumberConstraintFailed"
    fresh = await c.put(path, json={"network": {"name": "x"}},
                        headers={"If-Match": "revision_number=1"})
    assert fresh.status_code == 200 and fresh.json()["network"]["revision_number"] == 2
    assert (await c.delete(path, headers={"If-Match": "revision_number=1"})).status_code == 412
    assert (await c.delete(path, headers={"If-Match": "revision_number=2"})).status_code == 204
    assert (await c.get(path)).status_code == 404


async def test_repeated_fixed_ips_filters(stack: Stack) -> None:
    """Issue 12.8: values of one fixed_ips key OR (as Neutron), keys AND; ~1,000 of
    them work, and too many are a 400, never a 503."""
    c = stack.client
    net = (await c.post("/v2.0/networks", json={"network": {}})).json()["network"]
    subs = []
    for cidr in ("10.0.0.0/24", "fd00:3::/64"):
        subs.append((await c.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "ip_version": 6 if ":" in cidr else 4,
            "cidr": cidr}})).json()["subnet"]["id"])
    ports = []
    for i in (5, 6, 7):
        r = await c.post("/v2.0/ports", json={"port": {"network_id": net["id"], "fixed_ips": [
            {"ip_address": f"10.0.0.{i}"}]}})
        ports.append(r.json()["port"]["id"])
    v6 = (await c.post("/v2.0/ports", json={"port": {"network_id": net["id"], "fixed_ips": [
        {"ip_address": "fd00:3::5"}]}})).json()["port"]["id"]

    async def ids(query: str) -> set[str]:
        response = await c.get(f"/v2.0/ports?{query}")
        assert response.status_code == 200, response.text
        return {p["id"] for p in response.json()["ports"]}

    assert await ids("fixed_ips=ip_address%3D10.0.0.5&fixed_ips=ip_address%3D10.0.0.6") == \
        set(ports[:2])
    assert await ids(f"fixed_ips=subnet_id%3D{subs[0]}&fixed_ips=ip_address%3D10.0.0.7"
                     "&fixed_ips=ip_address%3Dfd00:3::5") == {ports[2]}
    assert await ids("fixed_ips=ip_address%3DFD00:3:0::5") == {v6}  # canonical form
    many = "&".join(f"fixed_ips=ip_address%3D10.0.{i // 250}.{i % 250}" for i in range(1000))
    assert await ids(many) == set(ports)
    too_many = await c.get("/v2.0/ports?" + "&".join(f"id=x{i}" for i in range(2001)))
    assert too_many.status_code == 400
    assert "Too many filter values" in too_many.json()["NeutronError"]["message"]


async def test_a_long_listing_keeps_every_ports_addresses_and_tags(stack: Stack) -> None:
    """Over MANY_ROWS ports, addresses and tags come by the listing's own statement
    (a subquery): each port still gets exactly its own, filters still apply to both."""
    c = stack.client
    net = (await c.post("/v2.0/networks", json={"network": {}})).json()["network"]
    await c.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.9.0.0/24"}})
    body = {"ports": [{"network_id": net["id"], "device_owner": f"own{i % 2}",
                       "fixed_ips": [{"ip_address": f"10.9.0.{i + 10}"}]} for i in range(120)]}
    created = (await c.post("/v2.0/ports", json=body)).json()["ports"]
    tagged = created[7]["id"]
    assert (await c.put(f"/v2.0/ports/{tagged}/tags", json={"tags": ["b", "a"]})).status_code \
        == 200
    want = {p["id"]: p["fixed_ips"] for p in created}
    listed = (await c.get("/v2.0/ports")).json()["ports"]
    assert {p["id"]: p["fixed_ips"] for p in listed} == want
    assert {p["id"]: p["tags"] for p in listed if p["tags"]} == {tagged: ["a", "b"]}
    odd = (await c.get("/v2.0/ports?device_owner=own1")).json()["ports"]
    assert len(odd) == 60 and all(p["fixed_ips"] == want[p["id"]] for p in odd)
    assert [p["tags"] for p in odd if p["id"] == tagged] == [["a", "b"]]
