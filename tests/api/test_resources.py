"""The collection routes over the services' typed interface (vifwire.api.services)."""

from __future__ import annotations

import subprocess
import sys

from server.helpers import Stack
from vifwire.api.resources import RESOURCES


async def test_each_resource_declares_what_it_supports(stack: Stack) -> None:
    declared = {r.collection: (r.creatable, r.taggable, r.if_match) for r in RESOURCES}
    assert declared == {"networks": (True, True, True), "subnets": (True, True, True),
                        "ports": (True, True, True), "agents": (False, False, False),
                        "security-groups": (True, True, True),
                        "security-group-rules": (True, False, True),
                        "subnetpools": (True, True, True)}
    refused = await stack.client.post("/v2.0/agents", json={"agent": {}})
    assert refused.status_code == 405
    assert refused.json()["NeutronError"]["type"] == "HTTPMethodNotAllowed"


async def test_every_read_of_a_taggable_resource_carries_its_tags(stack: Stack) -> None:
    c = stack.client
    net = (await c.post("/v2.0/networks", json={"network": {"name": "n"}})).json()["network"]
    port = (await c.post("/v2.0/ports", json={"port": {"network_id": net["id"]}})).json()["port"]
    for collection, item in (("networks", net), ("ports", port)):
        assert (await c.put(f"/v2.0/{collection}/{item['id']}/tags/blue")).status_code == 201
        member = collection[:-1]
        shown = (await c.get(f"/v2.0/{collection}/{item['id']}")).json()[member]
        listed = (await c.get(f"/v2.0/{collection}?tags=blue")).json()[collection]
        updated = (await c.put(f"/v2.0/{collection}/{item['id']}",
                               json={member: {"name": "m"}})).json()[member]
        assert shown["tags"] == ["blue"]
        assert [i["id"] for i in listed] == [item["id"]]
        assert listed[0]["tags"] == ["blue"]
        assert updated["tags"] == ["blue"] and updated["name"] == "m"


async def test_if_match_is_honoured_where_declared(stack: Stack) -> None:
    c = stack.client
    net = (await c.post("/v2.0/networks", json={"network": {"name": "n"}})).json()["network"]
    stale = {"If-Match": f"revision_number={net['revision_number'] + 5}"}
    put = await c.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "x"}},
                      headers=stale)
    assert put.status_code == 412
    assert put.json()["NeutronError"]["type"] == "RevisionNumberConstraintFailed"
    assert (await c.delete(f"/v2.0/networks/{net['id']}", headers=stale)).status_code == 412
    assert (await c.get(f"/v2.0/networks/{net['id']}")).json()["network"]["name"] == "n"


async def test_agents_have_no_revision_so_if_match_is_ignored(stack: Stack) -> None:
    await stack.register_agent()
    c = stack.client
    agent = (await c.get("/v2.0/agents")).json()["agents"][0]
    header = {"If-Match": "revision_number=7"}
    put = await c.put(f"/v2.0/agents/{agent['id']}", json={"agent": {"description": "d"}},
                      headers=header)
    assert put.status_code == 200 and put.json()["agent"]["description"] == "d"
    # It used to look the agent's revision_number up: a 500.
    assert (await c.delete(f"/v2.0/agents/{agent['id']}", headers=header)).status_code == 204
    assert (await c.get("/v2.0/agents")).json()["agents"] == []


def test_the_api_loads_no_service_or_database_code() -> None:
    probe = ("import sys, vifwire.api.resources, vifwire.api.tags, vifwire.api.openapi, "
             "vifwire.api.meta, vifwire.api.errors, vifwire.api.dispatch; "
             "print(sorted(m for m in sys.modules if m.startswith(('vifwire.server', "
             "'vifwire.db', 'vifwire.agent', 'ovsdbapp'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.strip()
    # The faults (sg_faults: those of security groups, which API converters raise) and
    # the policy (the request context and Neutron's rules: pure, no database) and
    # the caller's admin flag the gate sets (server/caller.py: imports nothing).
    assert loaded == ("['vifwire.server', 'vifwire.server.caller', 'vifwire.server.faults', "
                      "'vifwire.server.policy', 'vifwire.server.sg_faults']")


async def test_openapi_offers_if_match_only_where_it_is_honoured(stack: Stack) -> None:
    paths = (await stack.client.get("/openapi.json")).json()["paths"]
    for collection, honoured in (("networks", True), ("agents", False)):
        item = paths[f"/v2.0/{collection}/{{item_id}}"]
        for method in ("put", "delete"):
            names = [p["name"] for p in item[method].get("parameters", [])]
            assert ("If-Match" in names) is honoured, (collection, method)
            assert ("412" in item[method]["responses"]) is honoured, (collection, method)
