"""The served OpenAPI document: complete, valid, and what the server really does.

`test_fuzz` runs schemathesis against a real server (uvicorn on a free port),
positive and negative cases for every operation, and requires no 5xx and every
response to match the document's own schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import create_engine, text

from clients.live import LiveServer, live_server
from server.helpers import Stack
from vifwire.api import openapi
from vifwire.app import create_app
from vifwire.bus.local import LocalBus
from vifwire.db.schema import metadata
from vifwire.settings import Settings
from vifwire.trace import NullTracer

# Per operation and mode (~40 operations): about two minutes on SQLite. PostgreSQL's
# run looks for the dialect's own 5xx (limits, types) with fewer cases from the same
# fixed seed (derandomized).
EXAMPLES = {"sqlite": 25, "postgresql": 12}


def _api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every APIRoute, also inside included routers (FastAPI may keep them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            inner = prefix + (getattr(route.include_context, "prefix", "") or "")
            yield from _api_routes(route.original_router.routes, inner)


def test_every_route_is_described(tmp_path: Path) -> None:
    app = create_app(Settings(run_dir=tmp_path), LocalBus(), NullTracer())
    doc = app.openapi()
    routes = [(p, r) for p, r in _api_routes(app.routes) if r.include_in_schema]
    assert len(routes) >= 30
    for path, route in routes:
        assert path in doc["paths"], path
        for method in route.methods - {"HEAD"}:
            operation = doc["paths"][path].get(method.lower())
            assert operation is not None, (method, path)
            assert "operationId" in operation, (method, path)
    ours = openapi.describe()["paths"]
    assert ours.keys() <= doc["paths"].keys()


def test_document_is_served_and_loads(tmp_path: Path) -> None:
    with live_server(tmp_path) as server:
        doc = requests.get(server.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(doc)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 30
    props = doc["components"]["schemas"]["port"]["properties"]
    assert {"binding:host_id", "fixed_ips", "tags", "revision_number"} <= props.keys()


async def test_responses_match_document(stack: Stack) -> None:
    """A few real responses validated against the document, without fuzzing."""
    import jsonschema

    doc = stack.app.openapi()
    doc["components"]["schemas"]["network"]["properties"].pop("mtu")  # must now fail:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(
            {"$ref": "#/components/schemas/network", "components": doc["components"]}
        ).validate({"mtu": 1450})
    doc = openapi.build(stack.app)
    c = stack.client
    net = (await c.post("/v2.0/networks", json={"network": {"name": "n"}})).json()["network"]
    (await c.put(f"/v2.0/networks/{net['id']}/tags", json={"tags": ["x"]})).raise_for_status()
    checks = [("/v2.0/networks", "get", "200", await c.get("/v2.0/networks?limit=1")),
              ("/v2.0/networks/{item_id}", "get", "200",
               await c.get(f"/v2.0/networks/{net['id']}")),
              ("/v2.0/networks/{item_id}", "get", "404", await c.get("/v2.0/networks/nope"))]
    for path, method, status, response in checks:
        assert str(response.status_code) == status, response.text
        schema = doc["paths"][path][method]["responses"][status]["content"][
            "application/json"]["schema"]
        # The root carries `components`, so the document's own $refs resolve.
        jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(
            response.json())


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql",
                                                              marks=pytest.mark.postgres)])
def fuzz_server(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("fuzz")
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        engine = create_engine(url)
        with engine.begin() as conn:
            metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        engine.dispose()
    with live_server(tmp, url) as server:
        server.register_agent("compute-1")
        yield server


def _operations(doc: dict[str, Any]) -> list[Any]:
    schema = schemathesis.openapi.from_dict(doc)
    return [r.ok() for r in schema.get_all_operations()]


def _strategies(operation: Any, real_id: str) -> Iterator[Any]:
    modes = schemathesis.GenerationMode
    yield operation.as_strategy(generation_mode=modes.POSITIVE)
    if "{item_id}" in operation.path:  # aim at an existing resource too
        yield operation.as_strategy(generation_mode=modes.POSITIVE,
                                    path_parameters={"item_id": real_id})
    yield operation.as_strategy(generation_mode=modes.NEGATIVE)


def test_fuzz(fuzz_server: LiveServer, request: pytest.FixtureRequest) -> None:
    examples = EXAMPLES[request.node.callspec.params["fuzz_server"]]
    doc = requests.get(fuzz_server.url + "/openapi.json", timeout=10).json()
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance,
              negative_data_rejection]
    session = requests.Session()
    calls: list[int] = []
    for operation in _operations(doc):
        net = session.post(fuzz_server.url + "/v2.0/networks",
                           json={"network": {"name": "fuzz"}}).json()["network"]
        for strategy in _strategies(operation, net["id"]):
            @hypothesis.given(case=strategy)
            @hypothesis.settings(max_examples=examples, deadline=None, database=None,
                                 derandomize=True, suppress_health_check=list(HealthCheck),
                                 phases=[hypothesis.Phase.generate])
            def run(case: schemathesis.Case) -> None:
                response = case.call_and_validate(base_url=fuzz_server.url,
                                                  session=session, checks=checks)
                calls.append(response.status_code)
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                continue  # nothing negative to say about a route without inputs
    assert len(calls) > 40 * examples, len(calls)
    assert {200, 201, 204, 400, 404} <= set(calls), sorted(set(calls))
