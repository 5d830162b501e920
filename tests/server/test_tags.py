"""Tags: the /tags routes on networks, subnets and ports, and the tag filters."""

from __future__ import annotations

from .helpers import Stack


async def test_tag_routes(stack: Stack) -> None:
    c = stack.client
    net = (await c.post("/v2.0/networks", json={"network": {"name": "n"}})).json()["network"]
    base = f"/v2.0/networks/{net['id']}/tags"
    assert (await c.get(base)).json() == {"tags": []}
    replaced = await c.put(base, json={"tags": ["red", "blue", "red"]})
    assert replaced.status_code == 200 and replaced.json() == {"tags": ["blue", "red"]}
    assert (await c.put(base + "/green")).status_code == 201
    assert (await c.get(base + "/green")).status_code == 204
    missing = await c.get(base + "/pink")
    assert missing.status_code == 404
    assert missing.json()["NeutronError"]["type"] == "TagNotFound"
    shown = (await c.get(f"/v2.0/networks/{net['id']}")).json()["network"]
    assert shown["tags"] == ["blue", "green", "red"]
    assert shown["revision_number"] == 3
    assert (await c.delete(base + "/blue")).status_code == 204
    assert (await c.delete(base + "/blue")).status_code == 404
    assert (await c.get(base)).json() == {"tags": ["green", "red"]}
    assert (await c.delete(base)).status_code == 204
    assert (await c.get(base)).json() == {"tags": []}
    for bad in ({"tags": "red"}, {"tags": ["a,b"]}, {"tags": ["x" * 61]}, {"tag": []},
                {"tags": [""]}, {"tags": [1]}):
        response = await c.put(base, json=bad)
        assert response.status_code == 400, bad
        assert response.json()["NeutronError"]["message"]
    gone = await c.get("/v2.0/ports/00000000-0000-0000-0000-000000000000/tags")
    assert gone.status_code == 404 and gone.json()["NeutronError"]["type"] == "PortNotFound"


async def test_tag_filters_and_cleanup(stack: Stack) -> None:
    c = stack.client
    ids = {}
    for name, tags in (("ab", ["a", "b"]), ("a", ["a"]), ("c", ["c"]), ("none", [])):
        net = (await c.post("/v2.0/networks", json={"network": {"name": name}})).json()
        ids[name] = net["network"]["id"]
        await c.put(f"/v2.0/networks/{ids[name]}/tags", json={"tags": tags})

    async def names(query: str) -> list[str]:
        got = (await c.get(f"/v2.0/networks?{query}&sort_key=name")).json()["networks"]
        return [n["name"] for n in got]

    assert await names("tags=a,b") == ["ab"]
    assert await names("tags=a") == ["a", "ab"]
    assert await names("tags-any=b,c") == ["ab", "c"]
    assert await names("not-tags=a,b") == ["a", "c", "none"]
    assert await names("not-tags-any=a") == ["c", "none"]

    subnet = (await c.post("/v2.0/subnets", json={"subnet": {
        "network_id": ids["ab"], "ip_version": 4, "cidr": "10.1.0.0/24"}})).json()["subnet"]
    await c.put(f"/v2.0/subnets/{subnet['id']}/tags/s1")
    assert [s["id"] for s in (await c.get("/v2.0/subnets?tags=s1")).json()["subnets"]] == [
        subnet["id"]]
    assert (await c.delete(f"/v2.0/networks/{ids['ab']}")).status_code == 204
    # The tag rows went with the network and its subnet.
    left = stack.app.state.services.tags.of([ids["ab"], subnet["id"], ids["a"]])
    assert dict(left) == {ids["a"]: ["a"]}


def test_existing_database_upgrades_to_tags(database_url: str) -> None:
    """A database made by 0001 (before tags) gains the tags table on start."""
    from alembic import command
    from sqlalchemy import inspect

    from vifwire.db.engine import alembic_config, make_engine, migrate

    engine = make_engine(database_url)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001_initial")
        assert "tags" not in inspect(engine).get_table_names()
        migrate(engine)
        assert "tags" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
