"""auth_strategy = keystone against a real Keystone: who may call, and who the call is."""

from __future__ import annotations

from pathlib import Path

from keystone_rig import Keystone
from server.helpers import running

from .conftest import Cloud, keystone_settings


async def test_no_token_or_a_bad_one_is_401_neutron_error(cloud: Cloud) -> None:
    client = cloud.stack.client
    for headers in ({}, {"X-Auth-Token": "not-a-token"}, {"X-Auth-Token": cloud.alice.token + "x"}):
        for method, url in (("GET", "/v2.0/networks"), ("POST", "/v2.0/networks"),
                            ("GET", "/v2.0/extensions"), ("GET", "/v2.0/networks/x/tags")):
            answer = await client.request(method, url, headers=headers, json={"network": {}})
            assert answer.status_code == 401, (method, url, headers, answer.text)
            assert answer.json()["NeutronError"]["type"] == "HTTPUnauthorized"
            assert answer.headers["www-authenticate"].startswith("Keystone uri=")
    # Version discovery needs no token, as on Neutron.
    assert (await client.get("/")).status_code == 200
    # Nothing was made by the refused POSTs.
    listed = await cloud.admin.call("GET", "/v2.0/networks")
    assert listed.status_code == 200 and listed.json()["networks"] == []


async def test_the_token_names_the_project_and_user(cloud: Cloud, keystone: Keystone) -> None:
    net = await cloud.alice.post("networks", "network", name="mine")
    assert net["project_id"] == net["tenant_id"] == keystone.projects["alpha"]
    # X-Project-Id means nothing with a token: the token decides.
    forged = await cloud.bob.call("POST", "/v2.0/networks", json={"network": {}},
                                  headers={"X-Project-Id": keystone.projects["alpha"]})
    assert forged.status_code == 201
    assert forged.json()["network"]["project_id"] == keystone.projects["beta"]


async def test_a_known_token_is_not_asked_again_and_a_revoked_one_fails_when_fresh(
        keystone: Keystone, tmp_path: Path) -> None:
    token = keystone.token("alice", "alpha")
    settings = keystone_settings(keystone, tmp_path, f"sqlite:///{tmp_path / 'a.sqlite'}",
                                 token_cache_time_s=300.0)
    async with running(settings) as stack:
        validator = stack.app.gate.validator
        headers = {"X-Auth-Token": token}
        for _ in range(5):
            assert (await stack.client.get("/v2.0/networks", headers=headers)).status_code == 200
        assert validator.keystone_calls == 1
        keystone.revoke(token)
        # Cached for token_cache_time, as keystonemiddleware does; a new server asks.
        assert (await stack.client.get("/v2.0/networks", headers=headers)).status_code == 200
    settings = settings.with_(database_url=f"sqlite:///{tmp_path / 'b.sqlite'}")
    async with running(settings) as stack:
        assert (await stack.client.get("/v2.0/networks",
                                       headers={"X-Auth-Token": token})).status_code == 401


async def test_keystone_unreachable_is_503(keystone: Keystone, tmp_path: Path) -> None:
    token = keystone.token("alice", "alpha")
    creds = keystone.credentials()
    dead = creds.__class__(**{**creds.__dict__, "auth_url": "http://127.0.0.1:9/v3"})
    settings = keystone_settings(keystone, tmp_path, f"sqlite:///{tmp_path / 'a.sqlite'}")
    async with running(settings.with_(keystone_authtoken=dead)) as stack:
        answer = await stack.client.get("/v2.0/networks", headers={"X-Auth-Token": token})
        assert answer.status_code == 503
        assert answer.json()["NeutronError"]["type"] == "ServiceUnavailable"
