"""Every failure is a Neutron-shaped JSON error with the right status."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import create_engine

from server.helpers import Stack, running
from vifwire.api.resources import MAX_BODY_BYTES
from vifwire.settings import Settings


def _err(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()["NeutronError"]
    assert set(body) == {"type", "message", "detail"}
    assert "Traceback" not in r.text
    return body


async def test_request_errors(stack: Stack) -> None:
    c = stack.client
    malformed = await c.post("/v2.0/networks", content=b"{not json",
                             headers={"content-type": "application/json"})
    assert _err(malformed, 400)["message"] == "Malformed request body"
    unknown = await c.post("/v2.0/networks", json={"network": {"foo": 1}})
    assert _err(unknown, 400)["message"] == "Unrecognized attribute(s) 'foo'"
    wrong_type = await c.post("/v2.0/networks", json={"network": {"admin_state_up": "maybe"}})
    assert "admin_state_up" in _err(wrong_type, 400)["message"]
    bad_uuid = await c.post("/v2.0/ports", json={"port": {"network_id": "nope"}})
    assert "is not a valid UUID" in _err(bad_uuid, 400)["message"]
    missing = await c.post("/v2.0/ports", json={"port": {}})
    assert "network_id" in _err(missing, 400)["message"]
    read_only = await c.post("/v2.0/networks", json={"network": {"status": "DOWN"}})
    _err(read_only, 400)
    wrong_key = await c.post("/v2.0/networks", json={"port": {}})
    _err(wrong_key, 400)
    no_body = await c.post("/v2.0/networks")
    _err(no_body, 400)
    assert _err(await c.get("/v2.0/nothing"), 404)["type"] == "HTTPNotFound"
    assert _err(await c.patch("/v2.0/networks"), 405)["type"] == "HTTPMethodNotAllowed"
    net = (await c.post("/v2.0/networks", json={"network": {}})).json()["network"]
    put_ro = await c.put(f"/v2.0/networks/{net['id']}",
                         json={"network": {"provider:segmentation_id": 5}})
    _err(put_ro, 400)
    bad_filter = await c.get("/v2.0/networks?admin_state_up=perhaps")
    _err(bad_filter, 400)


async def test_database_unreachable_is_503(settings: Settings) -> None:
    async with running(settings) as stack:
        context = stack.app.state.services.context
        healthy = context.engine
        # Nothing listens on port 1: every connection attempt is refused.
        context.engine = create_engine("postgresql+psycopg://root@127.0.0.1:1/none")
        try:
            body = _err(await stack.client.get("/v2.0/networks"), 503)
            assert body["type"] == "ServiceUnavailable"
            body = _err(await stack.client.post("/v2.0/networks", json={"network": {}}), 503)
        finally:
            context.engine.dispose()
            context.engine = healthy
        assert (await stack.client.get("/v2.0/networks")).status_code == 200


async def test_unexpected_error_is_json_500(stack: Stack) -> None:
    services = stack.app.state.services

    def explode(filters: Any) -> Any:
        raise RuntimeError("secret internals")

    original = services.networks.list
    services.networks.list = explode
    try:
        r = await stack.client.get("/v2.0/networks")
    finally:
        services.networks.list = original
    body = _err(r, 500)
    assert "secret internals" not in r.text
    assert body["type"] == "HTTPInternalServerError"


async def test_a_body_over_neutrons_size_limit_is_413_and_changes_nothing(stack: Stack) -> None:
    c = stack.client
    big = {"network": {"name": "x" * (MAX_BODY_BYTES + 1)}}
    declared = await c.post("/v2.0/networks", json=big)
    assert _err(declared, 413)["type"] == "HTTPRequestEntityTooLarge"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"network": {"name": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b"y" * 1024
        yield b'"}}'

    streamed = await c.post("/v2.0/networks", content=chunks(),
                            headers={"content-type": "application/json"})
    assert _err(streamed, 413)["type"] == "HTTPRequestEntityTooLarge"
    assert (await c.get("/v2.0/networks")).json()["networks"] == []
    fits = await c.post("/v2.0/networks", json={"network": {"name": "ok"}})
    assert fits.status_code == 201
