"""The Nova notifier against a real (tiny) HTTP server standing in for Nova."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, func, insert, select

from vifwire.db.engine import make_engine, migrate
from vifwire.db.schema import nova_outbox
from vifwire.profile.sql import install_sql_probe
from vifwire.server import notifier
from vifwire.server._db import release_connections
from vifwire.server.notifier import NovaNotifier, check_nova_url
from vifwire.server.nova_client import NovaUrlError
from vifwire.settings import Settings
from vifwire.trace import Stage, Tracer

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


async def _outbox_drained(stack: Stack) -> None:
    """Nothing more will be posted, and the rows Nova settled left the table."""
    await _idle(stack)
    assert _outbox_rows(stack.settings.effective_database_url) == 0


async def _idle(stack: Stack) -> None:
    """Everything queued was settled and no post is in flight: nothing more arrives
    (services hand their events over before their call returns)."""
    await asyncio.wait_for(stack.app.state.services.notifier.wait_idle(), 5.0)


async def test_plugged_event_sent_once(stack: Stack, agent: FakeAgent, nova: FakeNova) -> None:
    port = await _bound_compute_port(stack)
    await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
    await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])  # idempotent
    await _wait_for(lambda: nova.events)
    await _idle(stack)
    assert nova.events == [{"name": "network-vif-plugged", "server_uuid": "vm-uuid-1",
                            "tag": port["id"], "status": "completed"}]
    # The post names the transition: the port's revision as it went ACTIVE.
    active = (await stack.client.get(f"/v2.0/ports/{port['id']}")).json()["port"]
    assert nova.revisions == [[active["revision_number"]]]
    assert [e["port"] for e in stack.tracer.events if e["stage"] == Stage.EVENT_SENT] \
        == [port["id"]]
    await _outbox_drained(stack)

    await stack.rpc("ports_down", host=HOST, port_ids=[port["id"]])
    await _wait_for(lambda: len(nova.events) == 2)
    assert nova.events[1]["name"] == "network-vif-unplugged"
    down = (await stack.client.get(f"/v2.0/ports/{port['id']}")).json()["port"]
    assert nova.revisions[1] == [down["revision_number"]] != nova.revisions[0]


async def test_non_compute_port_sends_nothing(stack: Stack, nova: FakeNova) -> None:
    await stack.register_agent()
    net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
    r = await stack.client.post("/v2.0/ports", json={"port": {
        "network_id": net["id"], "device_owner": "network:dhcp", "device_id": "dhcp-1",
        "binding:host_id": HOST}})
    await stack.rpc("ports_up", host=HOST, port_ids=[r.json()["port"]["id"]])
    await _idle(stack)
    assert nova.posts == []


async def test_delete_active_port_sends_vif_deleted_not_unplugged(
        stack: Stack, agent: FakeAgent, nova: FakeNova) -> None:
    port = await _bound_compute_port(stack)
    await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
    await _wait_for(lambda: nova.events)
    await stack.client.delete(f"/v2.0/ports/{port['id']}")
    await _wait_for(lambda: len(nova.events) == 2)
    await _idle(stack)  # nothing else follows (Neutron sends no vif-unplugged)
    assert nova.events[1:] == [{"name": "network-vif-deleted", "server_uuid": "vm-uuid-1",
                                "tag": port["id"], "status": "completed"}]
    await _outbox_drained(stack)


async def test_delete_sends_vif_deleted_whatever_the_status(
        stack: Stack, agent: FakeAgent, nova: FakeNova) -> None:
    port = await _bound_compute_port(stack)  # DOWN: the VIF was never wired
    await stack.client.delete(f"/v2.0/ports/{port['id']}")
    await _wait_for(lambda: nova.events)
    await _idle(stack)
    assert nova.events == [{"name": "network-vif-deleted", "server_uuid": "vm-uuid-1",
                            "tag": port["id"], "status": "completed"}]


async def test_delete_of_a_port_nova_does_not_own_sends_nothing(
        stack: Stack, agent: FakeAgent, nova: FakeNova) -> None:
    await stack.register_agent()
    net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
    bodies = [{"device_owner": "network:dhcp", "device_id": "dhcp-1"},
              {"device_owner": "compute:nova", "device_id": ""}]
    for body in bodies:
        r = await stack.client.post("/v2.0/ports", json={"port": {
            "network_id": net["id"], "binding:host_id": HOST, **body}})
        await stack.client.delete(f"/v2.0/ports/{r.json()['port']['id']}")
    await _idle(stack)
    assert nova.posts == [] and nova.refused == []


async def test_failed_post_is_retried_and_delivered_once(stack: Stack, agent: FakeAgent,
                                                         nova: FakeNova) -> None:
    nova.statuses = [500]
    port = await _bound_compute_port(stack)
    await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
    await _wait_for(lambda: nova.events)
    await _idle(stack)
    assert nova.statuses == []  # the 500 was served
    assert [e["tag"] for e in nova.events] == [port["id"]]


async def test_many_ports_batched_without_loss(stack: Stack, agent: FakeAgent,
                                               nova: FakeNova) -> None:
    ports = await _bound_compute_ports(stack, [f"vm-{i}" for i in range(20)])
    await asyncio.gather(*(stack.rpc("ports_up", host=HOST, port_ids=[p["id"]])
                           for p in ports))
    await _wait_for(lambda: len(nova.events) >= 20)
    await _idle(stack)
    assert sorted(e["tag"] for e in nova.events) == sorted(p["id"] for p in ports)


async def test_a_backlog_goes_out_in_posts_nova_accepts_the_size_of(
        stack: Stack, agent: FakeAgent, nova: FakeNova, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nova answers 413 to bodies over its size limit: a backlog leaves in capped posts."""
    monkeypatch.setattr(notifier, "MAX_EVENTS_PER_POST", 3)
    nova.statuses = [500]  # events pile up behind the retry
    ports = await _bound_compute_ports(stack, [f"vm-{i}" for i in range(8)])
    await asyncio.gather(*(stack.rpc("ports_up", host=HOST, port_ids=[p["id"]])
                           for p in ports))
    await _wait_for(lambda: len(nova.events) >= 8)
    await _idle(stack)
    assert max(len(post) for post in nova.posts) == 3
    assert sorted(e["tag"] for e in nova.events) == sorted(p["id"] for p in ports)
    # Each post's header fits its own events, one revision each.
    assert all(revs is not None for revs in nova.revisions)


async def test_outbox_survives_restart(settings: Settings, nova: FakeNova) -> None:
    unreachable = settings.with_(nova_url="http://127.0.0.1:9/v2.1")
    async with running(unreachable) as stack:
        await stack.bus.serve(f"agent.{HOST}", FakeAgent())
        port = await _bound_compute_port(stack)
        # The row is committed before the call returns; Nova stays unreachable.
        await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
    assert _outbox_rows(settings.effective_database_url) == 1
    assert nova.posts == []
    async with running(settings) as stack:
        await _wait_for(lambda: nova.events)
        await _idle(stack)
    assert [e["tag"] for e in nova.events] == [port["id"]]
    assert nova.events[0]["name"] == "network-vif-plugged"
    assert _outbox_rows(settings.effective_database_url) == 0


async def test_only_writes_that_queue_events_wake_the_notifier(
        stack: Stack, agent: FakeAgent, nova: FakeNova) -> None:
    ctx = stack.app.state.services.context
    send, wakes = ctx.send_events, []

    def counting_send(events: list[Any]) -> None:
        wakes.append(len(events))
        send(events)
    ctx.send_events = counting_send
    port = await _bound_compute_port(stack)
    assert wakes == []  # creating and binding queue no event
    await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
    assert wakes == [1]
    await _wait_for(lambda: nova.events)
    await stack.client.delete(f"/v2.0/ports/{port['id']}")
    assert wakes == [1, 1]
    await _wait_for(lambda: len(nova.events) == 2)


async def _active_compute_ports(stack: Stack, servers: list[str]) -> list[dict[str, Any]]:
    """One bound compute port per server, all made ACTIVE by one agent report, so their
    plugged events are queued in one transaction and go to Nova in one post."""
    ports = await _bound_compute_ports(stack, servers)
    await stack.rpc("ports_up", host=HOST, port_ids=[p["id"] for p in ports])
    return ports


async def _bound_compute_ports(stack: Stack, servers: list[str]) -> list[dict[str, Any]]:
    """One compute port per server, bound to HOST, where a live agent is registered."""
    await stack.register_agent()
    net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
    await stack.client.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}})
    return (await stack.client.post("/v2.0/ports", json={"ports": [
        {"network_id": net["id"], "device_id": server, "device_owner": "compute:nova",
         "binding:host_id": HOST} for server in servers]})).json()["ports"]


async def test_a_batch_nova_refuses_is_split_and_only_bad_events_dropped(
        stack: Stack, agent: FakeAgent, nova: FakeNova, caplog: pytest.LogCaptureFixture) -> None:
    servers = [f"vm-{i}" for i in range(8)]
    nova.bad_servers = {"vm-2", "vm-6"}
    notifier = stack.app.state.services.notifier
    with caplog.at_level(logging.WARNING, logger="vifwire.server.notifier"):
        ports = await _active_compute_ports(stack, servers)
        await _wait_for(lambda: notifier.sent + notifier.refused == len(servers))
        await _idle(stack)
    assert len(nova.refused[0]) == len(servers)  # the first post held them all
    good = sorted(p["id"] for p in ports if p["device_id"] not in nova.bad_servers)
    assert sorted(e["tag"] for e in nova.events) == good  # each delivered exactly once
    assert notifier.refused == 2
    # Each bad event was finally refused on its own, and then dropped with Nova's reason.
    alone = sorted(post[0]["server_uuid"] for post in nova.refused if len(post) == 1)
    assert alone == ["vm-2", "vm-6"]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 2
    assert all("is not a 'uuid'" in message for message in dropped)
    assert sorted(e["port"] for e in stack.tracer.events if e["stage"] == Stage.EVENT_SENT) \
        == good
    await _outbox_drained(stack)


async def test_a_failure_while_splitting_keeps_the_rest_for_the_retry(
        stack: Stack, agent: FakeAgent, nova: FakeNova) -> None:
    servers = [f"vm-{i}" for i in range(6)]
    nova.bad_servers = {"vm-4"}
    nova.statuses = [500]  # the first post of a half without the bad event fails
    notifier = stack.app.state.services.notifier
    ports = await _active_compute_ports(stack, servers)
    await _wait_for(lambda: notifier.sent + notifier.refused == len(servers))
    await _idle(stack)
    assert nova.statuses == []  # the 500 was served
    good = sorted(p["id"] for p in ports if p["device_id"] != "vm-4")
    assert sorted(e["tag"] for e in nova.events) == good  # none lost, none twice
    assert notifier.refused == 1
    await _outbox_drained(stack)


async def test_a_single_refused_event_does_not_block_the_next(
        stack: Stack, agent: FakeAgent, nova: FakeNova) -> None:
    nova.bad_servers = {"vm-bad"}
    notifier = stack.app.state.services.notifier
    await _active_compute_ports(stack, ["vm-bad"])
    await _wait_for(lambda: notifier.refused == 1)
    port = await _bound_compute_port(stack)
    await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
    await _wait_for(lambda: nova.events)
    assert [e["tag"] for e in nova.events] == [port["id"]]
    assert len(nova.refused) == 1
    await _outbox_drained(stack)


@pytest.mark.parametrize("nova_url", ["https//nova:8774/v2.1", "ftp://nova/v2.1",
                                      "http://nova:port/v2.1", "http://nova/v2.1?x=1"])
async def test_an_unusable_nova_url_fails_the_app_start(settings: Settings,
                                                         nova_url: str) -> None:
    with pytest.raises(NovaUrlError, match="Nova URL"):
        async with running(settings.with_(nova_url=nova_url)):
            pass


def test_check_nova_url() -> None:
    for good in ("http://127.0.0.1:8774/v2.1", "https://nova.example/compute/v2.1/",
                 "http://[::1]:8774/v2.1"):
        check_nova_url(good)
    for bad, why in (("", "empty"), ("nova:8774", "http:// or https://"),
                     ("http:///v2.1", "no host"), ("http://nova:99999/v2.1", "bad port"),
                     ("http://nova/v2.1#x", "query or fragment")):
        with pytest.raises(NovaUrlError, match=why):
            check_nova_url(bad)


async def test_events_go_from_memory_and_each_post_is_cleared_before_the_next(
        stack: Stack, agent: FakeAgent, nova: FakeNova) -> None:
    """Once started, the notifier posts what services hand it: it never reads the
    outbox back per post, and the rows of each post Nova accepted leave the table
    in one DELETE before the next post, so a crash can repeat only the one in flight."""
    ports = await _bound_compute_ports(stack, [f"vm-{i}" for i in range(6)])
    await _idle(stack)  # the start-up read of the outbox is done
    probe = install_sql_probe(stack.app.state.services.context.engine)
    try:
        for port in ports:  # one report at a time, as an agent sends them in a storm
            await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
        await _wait_for(lambda: len(nova.events) == len(ports))
        await _outbox_drained(stack)
        top = probe.snapshot()["top"]
    finally:
        probe.remove()
    reads = [r["sql"] for r in top if r["sql"].startswith("SELECT") and "nova_outbox" in r["sql"]]
    assert all("FOR UPDATE SKIP LOCKED" in sql for sql in reads)  # only a post's claim
    deletes = sum(r["count"] for r in top if r["sql"].startswith("DELETE FROM nova_outbox"))
    assert deletes == len(nova.posts)
    assert sorted(e["tag"] for e in nova.events) == sorted(p["id"] for p in ports)


async def test_stop_clears_the_rows_nova_settled(settings: Settings, nova: FakeNova) -> None:
    async with running(settings) as stack:
        await stack.bus.serve(f"agent.{HOST}", FakeAgent())
        port = await _bound_compute_port(stack)
        notifier = stack.app.state.services.notifier
        await stack.rpc("ports_up", host=HOST, port_ids=[port["id"]])
        await _wait_for(lambda: notifier.sent == 1)
    assert _outbox_rows(settings.effective_database_url) == 0
    assert len(nova.events) == 1


async def test_rows_another_process_left_behind_are_sent_when_idle(
        settings: Settings, nova: FakeNova) -> None:
    """Each server process sends what its own transactions wrote; rows a dead process
    left in the outbox are picked up by a live one once they are old enough."""
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    notifier = NovaNotifier(engine, settings, Tracer("server", None), orphan_check_s=0.2)
    notifier.start()
    try:
        await asyncio.wait_for(notifier.wait_idle(), 5.0)  # the start-up read found nothing
        old = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=5)
        with engine.begin() as conn:
            conn.execute(insert(nova_outbox).values(
                key="p-1:network-vif-plugged:2", name="network-vif-plugged",
                server_uuid="vm-orphan", tag="p-1", status="completed", created_at=old))
        await _wait_for(lambda: nova.events)
        assert [e["server_uuid"] for e in nova.events] == ["vm-orphan"]
        await _wait_for(lambda: _outbox_rows(settings.effective_database_url) == 0)
    finally:
        await notifier.stop()
        release_connections(engine)
        engine.dispose()


async def test_a_post_nova_finds_too_large_is_split_until_it_fits(
        stack: Stack, agent: FakeAgent, nova: FakeNova) -> None:
    """Nova's request size limit may be smaller than ours: 413 splits the batch."""
    nova.max_body = 400  # about two events
    nova.statuses = [500]  # the events pile up into one post behind a retry
    ports = await _bound_compute_ports(stack, [f"vm-{i}" for i in range(6)])
    await asyncio.gather(*(stack.rpc("ports_up", host=HOST, port_ids=[p["id"]])
                           for p in ports))
    await _wait_for(lambda: len(nova.events) >= 6)
    await _idle(stack)
    assert nova.too_large > 0
    assert sorted(e["tag"] for e in nova.events) == sorted(p["id"] for p in ports)


# Only PostgreSQL has several writer processes (SQLite has one: no claims).
@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)
async def test_a_row_another_process_is_posting_is_not_posted_again(
        settings: Settings, nova: FakeNova) -> None:
    """Several server processes share the outbox on PostgreSQL: a row another one
    holds for its post (FOR UPDATE) is skipped; one it left unlocked is posted."""
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=30)
    with engine.begin() as conn:
        conn.execute(insert(nova_outbox), [
            {"key": f"p-{i}:network-vif-plugged:2", "name": "network-vif-plugged",
             "server_uuid": f"vm-{i}", "tag": f"p-{i}", "status": "completed",
             "created_at": old} for i in (1, 2)])
    other = engine.connect()  # the other process, in the middle of posting p-1
    other.begin()
    other.execute(select(nova_outbox.c.key).where(
        nova_outbox.c.key == "p-1:network-vif-plugged:2").with_for_update())
    notifier = NovaNotifier(engine, settings, Tracer("server", None), orphan_check_s=0.2)
    notifier.start()
    try:
        await asyncio.wait_for(notifier.wait_idle(), 5.0)
        assert [e["tag"] for e in nova.events] == ["p-2"]
        other.rollback()  # it died before Nova answered: the next orphan check takes it
        await _wait_for(lambda: len(nova.events) == 2)
        await asyncio.wait_for(notifier.wait_idle(), 5.0)
        assert [e["tag"] for e in nova.events] == ["p-2", "p-1"]
        assert _outbox_rows(settings.effective_database_url) == 0
    finally:
        other.close()
        await notifier.stop()
        release_connections(engine)
        engine.dispose()
