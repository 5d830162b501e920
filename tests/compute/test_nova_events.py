"""The Nova event endpoint, driven over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from orjson import dumps as orjson_dumps

from vifwire.compute.errors import ComputeError, EventTimeout
from vifwire.compute.nova_events import VIF_PLUGGED, EventBook, NovaEndpoint, split_nova_url
from vifwire.compute.nova_server import MAX_BODY_BYTES, MAX_TRANSITIONS_PER_SERVER, ServerRegistry
from vifwire.nova_revisions import HEADER, format_revisions
from vifwire.nova_token import ensure_token, token_path
from vifwire.trace import Stage, Tracer


def _event(server: str, port: str, name: str = VIF_PLUGGED) -> dict[str, str]:
    return {"name": name, "server_uuid": server, "tag": port, "status": "completed"}


def _auth(endpoint: NovaEndpoint) -> dict[str, str]:
    if endpoint.token_file is None:
        return {}
    return {"X-Auth-Token": endpoint.token_file.read_text().strip()}


async def _post(endpoint: NovaEndpoint, events: list[dict[str, str]],
                revisions: str | None = None) -> httpx.Response:
    """`revisions`: the X-Vifwire-Event-Revisions value to send, if any."""
    headers = _auth(endpoint) | ({HEADER: revisions} if revisions is not None else {})
    async with httpx.AsyncClient() as client:
        return await client.post(f"{endpoint.url}/os-server-external-events",
                                 json={"events": events}, headers=headers)


async def _settled(endpoint: NovaEndpoint, server: str) -> None:
    """Every event answered so far has reached the book: the control socket keeps
    order, so once a fresh event is in, so is all that came before it."""
    marker = f"marker-{uuid.uuid4()}"
    await _post(endpoint, [_event(server, marker, name="network-changed")])
    await endpoint.book.wait("network-changed", marker, timeout=5)


@pytest.fixture
async def endpoint(tmp_path: Path) -> NovaEndpoint:
    book = EventBook(Tracer("compute", None))
    ensure_token(tmp_path)
    async with NovaEndpoint(book, "http://127.0.0.1:0/v2.1",
                            token_file=token_path(tmp_path)) as ep:
        yield ep


def test_split_nova_url() -> None:
    assert split_nova_url("http://127.0.0.1:8774/v2.1") == ("127.0.0.1", 8774, "/v2.1")
    assert split_nova_url("http://nova/") == ("nova", 80, "")
    with pytest.raises(ComputeError):
        split_nova_url("ftp://x")


async def test_event_before_wait_is_not_lost(endpoint: NovaEndpoint) -> None:
    server, port = str(uuid.uuid4()), str(uuid.uuid4())
    endpoint.book.expect_server(server)
    before = time.time()
    response = await _post(endpoint, [_event(server, port)])
    assert response.status_code == 200
    assert response.json() == {"events": [{**_event(server, port), "code": 200}]}
    event = await endpoint.book.wait(VIF_PLUGGED, port, timeout=1)
    assert before <= event.t <= time.time()
    assert event.server_uuid == server and event.status == "completed"
    marks = endpoint.book.tracer.events
    assert [(m["stage"], m["port"], m["t"]) for m in marks] == \
        [(Stage.EVENT_RECEIVED, port, event.t)]


async def test_wait_then_event(endpoint: NovaEndpoint) -> None:
    server, port = str(uuid.uuid4()), str(uuid.uuid4())
    endpoint.book.expect_server(server)
    waiter = asyncio.create_task(endpoint.book.wait(VIF_PLUGGED, port, timeout=5),
                                 name="test:wait")
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await _post(endpoint, [_event(server, port)])
    event = await waiter
    assert event.tag == port


async def test_wait_times_out_cleanly(endpoint: NovaEndpoint) -> None:
    with pytest.raises(EventTimeout, match="network-vif-plugged"):
        await endpoint.book.wait(VIF_PLUGGED, "nope", timeout=0.1)
    # A late event is still recorded and a second wait gets it.
    server = str(uuid.uuid4())
    endpoint.book.expect_server(server)
    await _post(endpoint, [_event(server, "nope")])
    assert (await endpoint.book.wait(VIF_PLUGGED, "nope", timeout=0.1)).tag == "nope"


async def test_unknown_server_and_mixed(endpoint: NovaEndpoint) -> None:
    known = str(uuid.uuid4())
    endpoint.book.expect_server(known)
    response = await _post(endpoint, [_event(str(uuid.uuid4()), "p1")])
    assert response.status_code == 404
    response = await _post(endpoint, [_event(known, "p2"), _event(str(uuid.uuid4()), "p3")])
    assert response.status_code == 207
    assert [e["code"] for e in response.json()["events"]] == [200, 404]
    assert (VIF_PLUGGED, "p3") not in endpoint.book.received


async def test_vif_deleted_is_accepted_but_is_not_a_plug(endpoint: NovaEndpoint) -> None:
    """The server sends network-vif-deleted when a VM's port is deleted (as Neutron does):
    Nova takes it with 200, and it neither marks the port as plugged nor wakes a VM
    waiting for network-vif-plugged."""
    server, port = str(uuid.uuid4()), str(uuid.uuid4())
    endpoint.book.expect_server(server)
    waiter = asyncio.create_task(endpoint.book.wait(VIF_PLUGGED, port, timeout=5),
                                 name="test:wait")
    deleted = _event(server, port, name="network-vif-deleted")
    response = await _post(endpoint, [deleted])
    assert response.status_code == 200
    assert response.json() == {"events": [{**deleted, "code": 200}]}
    event = await endpoint.book.wait("network-vif-deleted", port, timeout=1)
    assert event.server_uuid == server
    await asyncio.sleep(0.05)
    assert not waiter.done()
    assert (VIF_PLUGGED, port) not in endpoint.book.received
    assert list(endpoint.book.tracer.events) == []  # no event_received stage for a delete
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter


async def test_bad_request(endpoint: NovaEndpoint) -> None:
    server = str(uuid.uuid4())
    endpoint.book.expect_server(server)
    async with httpx.AsyncClient(headers=_auth(endpoint)) as client:
        url = f"{endpoint.url}/os-server-external-events"

        async def code(body: object) -> int:
            return (await client.post(url, json=body)).status_code

        assert await code({"events": []}) == 400
        assert await code({"events": [{"name": "bogus", "server_uuid": server}]}) == 400
        assert await code({"events": [_event("not-a-uuid", "p")]}) == 400
        assert await code({"events": [{**_event(server, "p"), "tag": 5}]}) == 400
        assert await code({"events": [{**_event(server, "p"), "tag": "t" * 256}]}) == 400
        assert await code({"events": [{**_event(server, "p"), "extra": 1}]}) == 400
        # One bad event refuses the whole post: the good one before it is not taken.
        assert await code({"events": [_event(server, "good"), {"name": "bogus"}]}) == 400
        assert (await client.post(url, content=b"{")).status_code == 400
    assert endpoint.book.received == {}


async def test_events_need_the_run_token(endpoint: NovaEndpoint) -> None:
    """A forged "failed" event, without the token or with a wrong one, fails no VM."""
    server, port = str(uuid.uuid4()), str(uuid.uuid4())
    endpoint.book.expect_server(server)
    forged = {"events": [{**_event(server, port), "status": "failed"}]}
    url = f"{endpoint.url}/os-server-external-events"
    async with httpx.AsyncClient() as client:
        for headers in ({}, {"X-Auth-Token": "guess"}, {"X-Auth-Token": ""}):
            response = await client.post(url, json=forged, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == 401
        assert (await client.get(f"{endpoint.url}/")).status_code == 200  # versions: open
    assert (await _post(endpoint, [_event(server, port)])).status_code == 200
    event = await endpoint.book.wait(VIF_PLUGGED, port, timeout=1)
    assert event.status == "completed"
    assert oct(endpoint.token_file.stat().st_mode & 0o777) == "0o600"  # type: ignore[union-attr]


async def test_an_oversized_post_is_refused_unread(endpoint: NovaEndpoint) -> None:
    """Nova's limit (114,688 bytes): 413 on a declared 300 MB length before a byte of
    the body is sent, and on a chunked body as soon as it passes the limit; the
    endpoint's memory does not grow with the post."""
    server = str(uuid.uuid4())
    endpoint.book.expect_server(server)
    pid = endpoint.pid
    assert pid is not None
    rss_before = _rss_kib(pid)
    token = _auth(endpoint)["X-Auth-Token"]
    head = (f"POST /v2.1/os-server-external-events HTTP/1.1\r\nHost: nova\r\n"
            f"X-Auth-Token: {token}\r\nContent-Type: application/json\r\n")
    declared = await _raw_exchange(endpoint, (head + "Content-Length: 314572800\r\n\r\n")
                                   .encode(), b"")
    assert declared.startswith(b"HTTP/1.1 413 "), declared[:80]
    chunked_head = (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b" " * (64 * 1024)
    # Two chunks pass the limit: the answer is 413 without the rest being awaited.
    over = await _raw_exchange(endpoint, chunked_head, b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2)
    assert over.startswith(b"HTTP/1.1 413 "), over[:80]
    assert b'"overLimit"' in over
    # 32 MB streamed: cut off early (the 413 may be lost to the reset of a close with
    # unread data, as with any server), and never held in memory.
    streamed = await _raw_exchange(endpoint, chunked_head,
                                   b"%x\r\n%s\r\n" % (len(chunk), chunk) * 512)
    assert streamed == b"" or streamed.startswith(b"HTTP/1.1 413 ")
    # Just under the limit is fine (a large but valid batch).
    batch = [_event(server, f"p{i}") for i in range(1000)]
    while len(orjson_dumps({"events": batch})) > MAX_BODY_BYTES:
        batch.pop()
    assert (await _post(endpoint, batch)).status_code == 200
    assert _rss_kib(pid) - rss_before < 20 * 1024


async def _raw_exchange(endpoint: NovaEndpoint, head: bytes, body: bytes) -> bytes:
    """Send a request head (and as much of `body` as the server takes); its answer."""
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    async def read_all() -> bytes:  # the server closes after a 413
        data = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                data += chunk
        return data

    answer = asyncio.create_task(read_all())  # read while sending: it may cut us off
    try:
        writer.write(head)
        for start in range(0, len(body), 65536):
            if answer.done():
                break
            with contextlib.suppress(ConnectionError):
                writer.write(body[start:start + 65536])
                await writer.drain()
        return await asyncio.wait_for(answer, 10)
    finally:
        answer.cancel()
        writer.transport.abort()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_port_in_use_is_a_clear_error(endpoint: NovaEndpoint) -> None:
    other = NovaEndpoint(EventBook(), endpoint.url)
    with pytest.raises(ComputeError, match="cannot listen"):
        await other.start()


async def test_endpoint_is_its_own_process_and_is_reaped() -> None:
    book = EventBook(Tracer("compute", None))
    endpoint = NovaEndpoint(book, "http://127.0.0.1:0/v2.1")
    await endpoint.start()
    pid = endpoint.pid
    assert pid is not None and pid != os.getpid()
    # An event that arrives before anyone waits for it is kept, stamped by that process.
    server, port = str(uuid.uuid4()), str(uuid.uuid4())
    book.expect_server(server)
    before = time.time()
    assert (await _post(endpoint, [_event(server, port)])).status_code == 200
    await asyncio.sleep(0.1)
    event = await book.wait(VIF_PLUGGED, port, timeout=1)
    assert before <= event.t <= time.time()
    await endpoint.stop()
    assert endpoint.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped, not a zombie


async def test_endpoint_exits_when_the_storm_end_closes() -> None:
    endpoint = NovaEndpoint(EventBook(), "http://127.0.0.1:0/v2.1")
    await endpoint.start()
    process = endpoint.process
    assert process is not None
    assert endpoint._sock is not None
    endpoint._sock.close()  # as when the storm process dies
    await asyncio.wait_for(process.wait(), 10)
    endpoint._sock = None
    await endpoint.stop()


async def test_waiters_fail_fast_if_the_endpoint_dies() -> None:
    book = EventBook()
    endpoint = NovaEndpoint(book, "http://127.0.0.1:0/v2.1")
    await endpoint.start()
    try:
        waiter = asyncio.create_task(book.wait(VIF_PLUGGED, "p", timeout=30), name="test:wait")
        await asyncio.sleep(0.05)
        assert endpoint.process is not None
        endpoint.process.kill()
        with pytest.raises(ComputeError, match="exited"):
            await asyncio.wait_for(waiter, 10)
    finally:
        await endpoint.stop()


def test_nova_listener_is_tcp_so_responses_are_not_delayed() -> None:
    """asyncio sets TCP_NODELAY on accepted sockets only when proto is TCP; without it
    every response to the notifier waits ~40 ms on Nagle + delayed ACK."""
    import socket

    from vifwire.compute.nova_server import _listen

    listener = _listen("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
    finally:
        listener.close()


async def test_a_repeated_transition_is_answered_alike_and_acted_on_once(
        endpoint: NovaEndpoint) -> None:
    """The notifier posts again what a SIGKILL left unsettled: same answer, not acted
    on again, counted as a repeat; the port's next transition is acted on."""
    server, port = str(uuid.uuid4()), str(uuid.uuid4())
    endpoint.book.expect_server(server)
    first = await _post(endpoint, [_event(server, port)], revisions="5")
    again = await _post(endpoint, [_event(server, port)], revisions="5")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() == {"events": [{**_event(server, port), "code": 200}]}
    await _settled(endpoint, server)
    assert endpoint.book.counts[(VIF_PLUGGED, port)] == 1
    assert endpoint.book.repeats[(VIF_PLUGGED, port)] == 1
    # Another event of the same revision is another transition; a new revision too.
    await _post(endpoint, [_event(server, port, name="network-vif-unplugged")], revisions="5")
    await _post(endpoint, [_event(server, port)], revisions="7")
    await _settled(endpoint, server)
    assert endpoint.book.counts[(VIF_PLUGGED, port)] == 2
    assert endpoint.book.counts[("network-vif-unplugged", port)] == 1
    assert sum(endpoint.book.repeats.values()) == 1


async def test_a_full_post_repeated_is_all_repeats(endpoint: NovaEndpoint) -> None:
    server = str(uuid.uuid4())
    endpoint.book.expect_server(server)
    events = [_event(server, f"p{i}") for i in range(200)]  # MAX_EVENTS_PER_POST
    revisions = format_revisions([10**7 + i for i in range(200)])
    first = await _post(endpoint, events, revisions)
    again = await _post(endpoint, events, revisions)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    await _settled(endpoint, server)
    assert all(endpoint.book.counts[(VIF_PLUGGED, f"p{i}")] == 1 for i in range(200))
    assert sum(endpoint.book.repeats.values()) == 200


@pytest.mark.parametrize("revisions", [None, "5,5", "junk", "5;"])
async def test_without_a_fitting_header_every_event_is_acted_on(
        endpoint: NovaEndpoint, revisions: str | None) -> None:
    """As today (older senders, other clients); a misfit header is ignored, as real
    Nova ignores it, rather than refusing the post."""
    server, port = str(uuid.uuid4()), str(uuid.uuid4())
    endpoint.book.expect_server(server)
    for _ in range(2):
        response = await _post(endpoint, [_event(server, port)], revisions)
        assert response.status_code == 200
    await _settled(endpoint, server)
    assert endpoint.book.counts[(VIF_PLUGGED, port)] == 2
    assert endpoint.book.repeats == {}


async def test_a_forgotten_server_takes_its_transitions_with_it(endpoint: NovaEndpoint) -> None:
    server, port = str(uuid.uuid4()), str(uuid.uuid4())
    endpoint.book.expect_server(server)
    await _post(endpoint, [_event(server, port)], revisions="5")
    endpoint.book.forget_server(server)
    assert (await _post(endpoint, [_event(server, port)], revisions="5")).status_code == 404
    endpoint.book.expect_server(server)  # the same uuid again: nothing remembered
    await _post(endpoint, [_event(server, port)], revisions="5")
    await _settled(endpoint, server)
    assert endpoint.book.counts[(VIF_PLUGGED, port)] == 2
    assert endpoint.book.repeats == {}


def test_transitions_kept_per_server_are_bounded() -> None:
    ours, theirs = socket.socketpair()
    try:
        registry = ServerRegistry(theirs)
        registry.servers.add("vm")
        for revision in range(MAX_TRANSITIONS_PER_SERVER + 10):
            assert registry.accept(VIF_PLUGGED, "vm", "p", "completed", 0.0, revision)
            assert "repeat" not in orjson.loads(ours.recv(65536))
        assert len(registry.acted["vm"]) == MAX_TRANSITIONS_PER_SERVER
        assert ("p", VIF_PLUGGED, 0) not in registry.acted["vm"]  # the oldest went first
        last = MAX_TRANSITIONS_PER_SERVER + 9
        registry.accept(VIF_PLUGGED, "vm", "p", "completed", 0.0, last)
        assert orjson.loads(ours.recv(65536))["repeat"] is True
    finally:
        ours.close()
        theirs.close()
