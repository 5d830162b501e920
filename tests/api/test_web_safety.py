"""Nothing of the API is reachable from a browser page of another origin (issue 11.5):
JSON bodies only, the Host header checked on loopback, no CORS, noauth on loopback only."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.helpers import Stack, running
from vifwire.settings import KeystoneCredentials, Settings
from vifwire.stack import StartupError, check_auth_settings

# What a page may send without a CORS preflight: text/plain, a form, a typeless blob.
SIMPLE_TYPES = ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x", None]


async def _networks(stack: Stack) -> list[object]:
    answer = await stack.client.get("/v2.0/networks")
    assert answer.status_code == 200
    networks: list[object] = answer.json()["networks"]
    return networks


async def test_a_body_that_is_not_json_is_refused_415(stack: Stack) -> None:
    body = b'{"network": {"name": "from-a-page"}}'
    net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
    for content_type in SIMPLE_TYPES:
        headers = {"content-type": content_type} if content_type else {}
        for method, url in (("POST", "/v2.0/networks"), ("PUT", f"/v2.0/networks/{net['id']}"),
                            ("PUT", f"/v2.0/networks/{net['id']}/tags")):
            answer = await stack.client.request(method, url, content=body, headers=headers)
            assert answer.status_code == 415, (content_type, method, url, answer.text)
            assert answer.json()["NeutronError"]["type"] == "HTTPUnsupportedMediaType"
    assert [n["name"] for n in await _networks(stack)] == [""]  # type: ignore[index]
    # JSON with a charset, and vendor +json types, are JSON.
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        made = await stack.client.post("/v2.0/networks", content=body,
                                       headers={"content-type": content_type})
        assert made.status_code == 201, made.text


async def test_a_foreign_host_header_is_refused_on_loopback(stack: Stack) -> None:
    for host in ("evil.example", "evil.example:9696", "127.0.0.1.nip.io", "localhost.evil"):
        answer = await stack.client.get("/v2.0/networks", headers={"host": host})
        assert answer.status_code == 400, host
        assert answer.json()["NeutronError"]["type"] == "HTTPBadRequest"
        made = await stack.client.post("/v2.0/networks", json={"network": {}},
                                       headers={"host": host})
        assert made.status_code == 400
    assert await _networks(stack) == []
    for host in ("localhost", "localhost:9696", "127.0.0.1:9696", "[::1]:9696", "server-1",
                 "LOCALHOST"):
        answer = await stack.client.get("/v2.0/networks", headers={"host": host})
        assert answer.status_code == 200, host


async def test_allowed_hosts_extend_the_names(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'a.sqlite'}",
                        nova_url="http://127.0.0.1:9/v2.1", api_allowed_hosts=("neutron.lan",))
    async with running(settings) as stack:
        ok = await stack.client.get("/v2.0/networks", headers={"host": "neutron.lan:9696"})
        assert ok.status_code == 200
        assert (await stack.client.get("/v2.0/networks", headers={"host": "other.lan"})
                ).status_code == 400


async def test_no_cors(stack: Stack) -> None:
    origin = {"origin": "http://evil.example"}
    preflight = await stack.client.options("/v2.0/networks", headers={
        **origin, "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-auth-token"})
    assert preflight.status_code >= 400
    for answer in (preflight, await stack.client.get("/v2.0/networks", headers=origin),
                   await stack.client.post("/v2.0/networks", json={"network": {}},
                                           headers=origin)):
        assert not [h for h in answer.headers if h.lower().startswith("access-control-")]


def test_noauth_listens_on_loopback_only(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_auth_settings(Settings(run_dir=tmp_path, api_host=host))
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.org"):
        with pytest.raises(StartupError, match="loopback only"):
            check_auth_settings(Settings(run_dir=tmp_path, api_host=host))
    creds = KeystoneCredentials("http://127.0.0.1:5000/v3", "vifwire", "pw")
    check_auth_settings(Settings(run_dir=tmp_path, api_host="0.0.0.0", auth_strategy="keystone",
                                 keystone_authtoken=creds))
    with pytest.raises(StartupError, match="keystone_authtoken"):
        check_auth_settings(Settings(run_dir=tmp_path, auth_strategy="keystone"))
    with pytest.raises(StartupError, match="not one of"):
        check_auth_settings(Settings(run_dir=tmp_path, auth_strategy="none"))
