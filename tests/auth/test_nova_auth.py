"""The Nova notifier authenticates with keystoneauth1 as a [nova] service user, and the
compute emulator's Nova endpoint can demand a Keystone token (real Keystone)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from keystone_rig import Keystone
from server.helpers import HOST, FakeAgent, running
from vifwire.bus.base import agent_topic
from vifwire.compute.nova_events import VIF_PLUGGED, EventBook, NovaEndpoint
from vifwire.settings import Settings
from vifwire.trace import Tracer


@pytest.fixture
async def nova(keystone: Keystone, tmp_path: Path) -> AsyncIterator[NovaEndpoint]:
    creds = keystone.credentials()
    keystone_file = tmp_path / "nova-keystone.json"
    keystone_file.write_text(json.dumps(creds.__dict__))
    keystone_file.chmod(0o600)
    async with NovaEndpoint(EventBook(Tracer("compute", None)), "http://127.0.0.1:0/v2.1",
                            keystone_file=keystone_file) as endpoint:
        yield endpoint


def _event(server: str, port: str) -> dict[str, str]:
    return {"name": VIF_PLUGGED, "server_uuid": server, "tag": port, "status": "completed"}


async def test_the_emulated_nova_takes_only_a_service_token(nova: NovaEndpoint,
                                                            keystone: Keystone) -> None:
    server, port = str(uuid.uuid4()), str(uuid.uuid4())
    nova.book.expect_server(server)
    url = f"{nova.url}/os-server-external-events"
    forged = {"events": [{**_event(server, port), "status": "failed"}]}
    async with httpx.AsyncClient(timeout=30) as client:
        for headers, status in (({}, 401), ({"X-Auth-Token": "guess"}, 401),
                                ({"X-Auth-Token": keystone.token("alice", "alpha")}, 403)):
            answer = await client.post(url, json=forged, headers=headers)
            assert answer.status_code == status, answer.text
        assert nova.book.received == {}
        service = keystone.token("vifwire", "service")
        answer = await client.post(url, json={"events": [_event(server, port)]},
                                   headers={"X-Auth-Token": service})
        assert answer.status_code == 200, answer.text
    event = await nova.book.wait(VIF_PLUGGED, port, timeout=5)
    assert event.status == "completed"


async def test_the_notifier_posts_with_its_service_users_token(
        nova: NovaEndpoint, keystone: Keystone, tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, host="server-1",
                        database_url=f"sqlite:///{tmp_path / 'n.sqlite'}", nova_url=nova.url,
                        nova_auth=keystone.credentials())
    server = str(uuid.uuid4())
    nova.book.expect_server(server)
    async with running(settings) as stack:
        await stack.bus.serve(agent_topic(HOST), FakeAgent())
        await stack.register_agent()
        net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()
        await stack.client.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["network"]["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}})
        port = (await stack.client.post("/v2.0/ports", json={"port": {
            "network_id": net["network"]["id"], "device_id": server,
            "device_owner": "compute:nova", "binding:host_id": HOST}})).json()["port"]
        await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
        event = await nova.book.wait(VIF_PLUGGED, port["id"], timeout=30)
        assert event.status == "completed"
        notifier = stack.app.state.services.notifier
        deadline = time.monotonic() + 10
        while notifier.sent < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        # No shared secret was needed: the run dir has none.
        assert not (tmp_path / "nova-token").exists()
