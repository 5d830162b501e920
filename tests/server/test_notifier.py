"""The Nova notifier against a real (tiny) HTTP server standing in for Nova."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import create_engine, func, select

from vifwire.db.schema import nova_outbox
from vifwire.settings import Settings
from vifwire.trace import Stage

from .helpers import HOST, FakeAgent, FakeNova, Stack, running


async def _bound_compute_port(stack: Stack) -> dict[str, Any]:
    await stack.register_agent()
    net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
    await stack.client.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}})
    r = await stack.client.post("/v2.0/ports", json={"port": {
        "network_id": net["id"], "device_id": "vm-uuid-1", "device_owner": "compute:nova",
        "binding:host_id": HOST}})
    return r.json()["port"]


async def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _outbox_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(nova_outbox)).scalar_one())
    finally:
        engine.dispose()


async def test_plugged_event_sent_once(stack: Stack, agent: FakeAgent, nova: FakeNova) -> None:
    port = await _bound_compute_port(stack)
    await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
    await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])  # idempotent
    await _wait_for(lambda: nova.events)
    await asyncio.sleep(0.2)
    assert nova.events == [{"name": "network-vif-plugged", "server_uuid": "vm-uuid-1",
                            "tag": port["id"], "status": "completed"}]
    assert [e["port"] for e in stack.tracer.events if e["stage"] == Stage.EVENT_SENT] \
        == [port["id"]]
    assert _outbox_rows(stack.settings.effective_database_url) == 0

    await stack.rpc("ports_down", host=HOST, port_ids=[port["id"]])
    await _wait_for(lambda: len(nova.events) == 2)
    assert nova.events[1]["name"] == "network-vif-unplugged"


async def test_non_compute_port_sends_nothing(stack: Stack, nova: FakeNova) -> None:
    await stack.register_agent()
    net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
    r = await stack.client.post("/v2.0/ports", json={"port": {
        "network_id": net["id"], "device_owner": "network:dhcp", "device_id": "dhcp-1",
        "binding:host_id": HOST}})
    await stack.rpc("ports_up", host=HOST, port_ids=[r.json()["port"]["id"]])
    await asyncio.sleep(0.2)
    assert nova.posts == []


async def test_delete_active_port_sends_unplugged(stack: Stack, agent: FakeAgent,
                                                  nova: FakeNova) -> None:
    port = await _bound_compute_port(stack)
    await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
    await _wait_for(lambda: nova.events)
    await stack.client.delete(f"/v2.0/ports/{port['id']}")
    await _wait_for(lambda: len(nova.events) == 2)
    assert nova.events[1] == {"name": "network-vif-unplugged", "server_uuid": "vm-uuid-1",
                              "tag": port["id"], "status": "completed"}


async def test_failed_post_is_retried_and_delivered_once(stack: Stack, agent: FakeAgent,
                                                         nova: FakeNova) -> None:
    nova.statuses = [500]
    port = await _bound_compute_port(stack)
    await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
    await _wait_for(lambda: nova.events)
    await asyncio.sleep(0.3)
    assert nova.statuses == []  # the 500 was served
    assert [e["tag"] for e in nova.events] == [port["id"]]


async def test_many_ports_batched_without_loss(stack: Stack, agent: FakeAgent,
                                               nova: FakeNova) -> None:
    await stack.register_agent()
    net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
    await stack.client.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}})
    ports = (await stack.client.post("/v2.0/ports", json={"ports": [
        {"network_id": net["id"], "device_id": f"vm-{i}", "device_owner": "compute:nova",
         "binding:host_id": HOST} for i in range(20)]})).json()["ports"]
    await asyncio.gather(*(stack.rpc("ports_up", host=HOST, port_ids=[p["id"]])
                           for p in ports))
    await _wait_for(lambda: len(nova.events) >= 20)
    await asyncio.sleep(0.2)
    assert sorted(e["tag"] for e in nova.events) == sorted(p["id"] for p in ports)


async def test_outbox_survives_restart(settings: Settings, nova: FakeNova) -> None:
    unreachable = settings.with_(nova_url="http://127.0.0.1:9/v2.1")
    async with running(unreachable) as stack:
        await stack.bus.serve(f"agent.{HOST}", FakeAgent())
        port = await _bound_compute_port(stack)
        await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
        await asyncio.sleep(0.2)
    assert _outbox_rows(settings.effective_database_url) == 1
    assert nova.posts == []
    async with running(settings) as stack:
        await _wait_for(lambda: nova.events)
        await asyncio.sleep(0.1)
    assert [e["tag"] for e in nova.events] == [port["id"]]
    assert nova.events[0]["name"] == "network-vif-plugged"
    assert _outbox_rows(settings.effective_database_url) == 0


async def test_only_writes_that_queue_events_wake_the_notifier(
        stack: Stack, agent: FakeAgent, nova: FakeNova) -> None:
    ctx = stack.app.state.services.context
    wake, wakes = ctx.wake_notifier, []

    def counting_wake() -> None:
        wakes.append(1)
        wake()
    ctx.wake_notifier = counting_wake
    port = await _bound_compute_port(stack)
    assert wakes == []  # creating and binding queue no event
    await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
    assert len(wakes) == 1
    await _wait_for(lambda: nova.events)
    await stack.client.delete(f"/v2.0/ports/{port['id']}")
    assert len(wakes) == 2
    await _wait_for(lambda: len(nova.events) == 2)
