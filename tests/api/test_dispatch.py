"""The collection routes answer alike through the fast dispatcher and through FastAPI.

`Settings.fast_dispatch` switches `vifwire.api.dispatch` off (FastAPI routes every
request); the same requests must get the same statuses and the same bodies, save
the ids and timestamps a fresh database hands out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.helpers import running
from vifwire.settings import Settings

VOLATILE = {"id", "network_id", "subnet_id", "created_at", "updated_at", "revision_number",
            "mac_address", "ip_address", "subnets", "fixed_ips", "request_id",
            "provider:segmentation_id", "security_groups"}


def _shape(value: Any) -> Any:
    """The body without what differs between two databases."""
    if isinstance(value, dict):
        return {k: "*" if k in VOLATILE else _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in a.keys() | b.keys()
                for d in _differences(a.get(k), b.get(k), f"{path}.{k}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


async def _script(settings: Settings) -> list[tuple[str, int, Any]]:
    out: list[tuple[str, int, Any]] = []
    async with running(settings) as stack:
        client = stack.client

        async def call(method: str, url: str, **kwargs: Any) -> Any:
            r = await client.request(method, url, **kwargs)
            body = r.json() if r.content and r.headers.get("content-type", "").startswith(
                "application/json") else r.text
            out.append((f"{method} {url.split('/')[2] if url.count('/') > 1 else url}",
                        r.status_code, _shape(body)))
            return body

        net = (await call("POST", "/v2.0/networks", json={"network": {"name": "n"}}))["network"]
        await call("POST", "/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}})
        port = (await call("POST", "/v2.0/ports", json={"port": {
            "network_id": net["id"], "name": "p"}}))["port"]
        await call("GET", "/v2.0/ports")
        await call("GET", f"/v2.0/ports/{port['id']}")
        await call("GET", "/v2.0/ports", params={"name": "p", "fields": "name"})
        await call("PUT", f"/v2.0/ports/{port['id']}", json={"port": {"name": "q"}})
        await call("PUT", f"/v2.0/ports/{port['id']}", json={"port": {"bogus": 1}})
        json_type = {"content-type": "application/json"}
        await call("POST", "/v2.0/ports", content=b"{not json", headers=json_type)
        await call("POST", "/v2.0/ports", content=b"x" * 200_000, headers=json_type)
        await call("POST", "/v2.0/ports", content=b'{"port": {}}',
                   headers={"content-type": "text/plain"})
        await call("GET", "/v2.0/ports/no-such-port")
        await call("DELETE", "/v2.0/ports/no-such-port")
        await call("GET", "/v2.0/nothings")
        await call("PATCH", "/v2.0/ports")
        await call("DELETE", f"/v2.0/ports/{port['id']}")
        await call("GET", "/v2.0/ports")
    return out


# One database is enough to compare the two routers: each run gets a fresh SQLite.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_fast_dispatch_and_fastapi_answer_alike(tmp_path: Path, settings: Settings) -> None:
    fast = await _script(settings.with_(
        database_url=f"sqlite:///{tmp_path / 'fast.sqlite'}", fast_dispatch=True))
    plain = await _script(settings.with_(
        database_url=f"sqlite:///{tmp_path / 'plain.sqlite'}", fast_dispatch=False))
    assert [(what, status) for what, status, _ in fast] == \
        [(what, status) for what, status, _ in plain]
    for (what, _, a), (_, _, b) in zip(fast, plain, strict=True):
        assert a == b, (what, _differences(a, b))
    assert {status for _, status, _ in fast} >= {200, 201, 204, 400, 404, 413, 415}
