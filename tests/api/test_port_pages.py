"""`GET /v2.0/ports` answered in SQL (`vifwire.server.port_pages`) gives what the
generic path (every port rendered, then sorted and paged in memory) gives.

The oracle is the same request plus a tag filter that excludes nothing
(`not-tags=<unused>`): tag filters are not pushed down, so it takes the generic path.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from server.helpers import Stack
from vifwire.api import attributes, listing

NAMES = ["a", "B", "b-", "_x", "Z", "ä", "a b", "a", "c", "B"]
ORACLE = "not-tags=never-set"


async def _ports(stack: Stack) -> tuple[list[dict], str]:
    c = stack.client
    net = (await c.post("/v2.0/networks", json={"network": {"name": "n"}})).json()["network"]
    subnet = (await c.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": "10.9.0.0/24", "ip_version": 4}})).json()["subnet"]
    body = {"ports": [{"network_id": net["id"], "name": name,
                       "device_owner": "network:dhcp" if i % 3 == 0 else "compute:nova"}
                      for i, name in enumerate(NAMES)]}
    made = (await c.post("/v2.0/ports", json=body)).json()["ports"]
    for port in made[::4]:
        assert (await c.put(f"/v2.0/ports/{port['id']}", json={
            "port": {"admin_state_up": False}})).status_code == 200
    assert (await c.put(f"/v2.0/ports/{made[1]['id']}/tags/red")).status_code == 201
    return made, subnet["id"]


def _markers(links: list[dict]) -> dict[str, list[str]]:
    return {link["rel"]: parse_qs(urlsplit(link["href"]).query)["marker"] for link in links}


async def test_pages_in_sql_match_the_generic_path(stack: Stack) -> None:
    made, subnet_id = await _ports(stack)
    c = stack.client
    ip = made[5]["fixed_ips"][0]["ip_address"]
    m, dhcp = made[4]["id"], made[3]["id"]
    queries = [
        "", "fields=id", "fields=id,name", "fields=fixed_ips", "fields=tags&fields=name",
        "fields=nope", "limit=3", "limit=3&page_reverse=True", f"limit=2&marker={m}",
        f"limit=2&marker={m}&page_reverse=True", "sort_key=name",
        f"sort_key=name&sort_dir=desc&limit=4&marker={m}",
        f"sort_key=admin_state_up&sort_dir=desc&sort_key=name&sort_dir=asc&limit=3&marker={m}",
        "sort_key=device_owner&limit=5&fields=id,device_owner",
        "device_owner=compute:nova&sort_key=name&sort_dir=desc",
        f"fixed_ips=ip_address={ip}", f"fixed_ips=subnet_id={subnet_id}&limit=2",
        f"device_owner=compute:nova&limit=2&marker={dhcp}",  # the marker filtered out
        f"device_owner=compute:nova&limit=2&marker={dhcp}&page_reverse=True",
        "sort_key=revision_number&sort_dir=desc&limit=3&fields=id,revision_number",
        f"sort_key=tenant_id&sort_key=mac_address&sort_dir=asc&sort_dir=desc&limit=20&marker={m}",
        "limit=100",
    ]
    for query in queries:
        got = await c.get(f"/v2.0/ports?{query}")
        want = await c.get(f"/v2.0/ports?{query}&{ORACLE}" if query else f"/v2.0/ports?{ORACLE}")
        assert got.status_code == want.status_code == 200, (query, got.text)
        assert got.json()["ports"] == want.json()["ports"], query
        assert _markers(got.json().get("ports_links", [])) == _markers(
            want.json().get("ports_links", [])), query
    missing = await c.get("/v2.0/ports?limit=1&marker=00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["NeutronError"]["type"] == "PortNotFound"
    tagged = (await c.get("/v2.0/ports?tags=red&fields=id")).json()["ports"]
    assert tagged == [{"id": made[1]["id"]}]


async def test_sql_answers_what_a_column_backs_and_leaves_the_rest(stack: Stack) -> None:
    """The pushed-down path is the one taken (so the test above compares two paths),
    and the generic one keeps what no column backs."""
    await _ports(stack)
    ports = stack.app.state.services.ports

    def page(**query: object) -> list[dict] | None:
        parsed = listing.parse(attributes.PORT, [(k, str(v)) for k, v in query.items()])
        return ports.page(parsed.filters, fields=parsed.fields, sorts=parsed.sorts,
                          limit=parsed.limit, marker=parsed.marker,
                          page_reverse=parsed.page_reverse)

    first = page(limit=2, sort_key="name", fields="id")
    assert first is not None and [set(p) for p in first] == [{"id"}, {"id"}]
    assert page(device_owner="compute:nova") is not None
    assert page(security_groups="x") is None  # no column: matched on the rendered port
    assert page(sort_key="created_at", limit=1) is None  # rendered at second resolution
