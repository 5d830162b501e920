"""A Nova-compatible `os-server-external-events` endpoint.

Neutron's notifier tells Nova a port is wired by posting
`{"events": [{"name": "network-vif-plugged", "server_uuid": ..., "tag": port_id,
"status": "completed"}]}` to `{nova_url}/os-server-external-events`. This module
answers like Nova: each event is echoed back with a per-event `code` (200, or 404
for a server it does not know), and the response is 200 when all were accepted,
207 when some were, 404 when none were.

Design: one `EventBook` per storm, living on the event loop. It stamps each
accepted event with `time.time()` at receipt and keeps it keyed by
`(name, tag)`; `wait(name, tag)` returns that stamp, whether the event arrived
before or after the wait began (an early event is never lost). The app runs
under uvicorn as a named task on the same loop (`NovaEndpoint`), so handlers and
waiters share state without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vifwire.compute.errors import ComputeError, EventTimeout
from vifwire.trace import NullTracer, Stage, Tracer

# Nova's accepted names (nova/api/openstack/compute/schemas/server_external_events.py).
EVENT_NAMES = frozenset({
    "network-changed", "network-vif-plugged", "network-vif-unplugged", "network-vif-deleted",
    "volume-extended", "power-update", "accelerator-request-bound", "volume-reimaged",
})
EVENT_STATUSES = frozenset({"completed", "failed", "in-progress"})
VIF_PLUGGED = "network-vif-plugged"


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    server_uuid: str
    tag: str
    status: str
    t: float  # time.time() when the endpoint accepted it


class EventBook:
    """Events received, by (name, tag), and the waiters for them."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        self.tracer = tracer or NullTracer()
        self.servers: set[str] = set()
        self.received: dict[tuple[str, str], ReceivedEvent] = {}
        self._waiters: dict[tuple[str, str], asyncio.Future[ReceivedEvent]] = {}

    def expect_server(self, server_uuid: str) -> None:
        self.servers.add(server_uuid)

    def forget_server(self, server_uuid: str) -> None:
        self.servers.discard(server_uuid)

    def accept(self, name: str, server_uuid: str, tag: str, status: str, t: float) -> bool:
        if server_uuid not in self.servers:
            return False
        event = ReceivedEvent(name, server_uuid, tag, status, t)
        self.received.setdefault((name, tag), event)  # the first one counts
        if name == VIF_PLUGGED:
            self.tracer.mark(Stage.EVENT_RECEIVED, tag, t=t, status=status)
        waiter = self._waiters.get((name, tag))
        if waiter is not None and not waiter.done():
            waiter.set_result(self.received[(name, tag)])
        return True

    async def wait(self, name: str, tag: str, timeout: float | None) -> ReceivedEvent:
        """The event `name` for `tag`, already received or the next to come."""
        key = (name, tag)
        if key in self.received:
            return self.received[key]
        waiter = self._waiters.get(key)
        if waiter is None or waiter.done():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[key] = waiter
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            raise EventTimeout(f"no {name} event for {tag} within {timeout}s") from None
        finally:
            if waiter.done() or key in self.received:
                self._waiters.pop(key, None)


def _not_found(message: str) -> JSONResponse:
    return JSONResponse({"itemNotFound": {"code": 404, "message": message}}, status_code=404)


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"badRequest": {"code": 400, "message": message}}, status_code=400)


def create_app(book: EventBook, prefix: str = "/v2.1") -> Starlette:
    prefix = prefix.rstrip("/")

    async def external_events(request: Request) -> JSONResponse:
        t = time.time()
        try:
            body = await request.json()
        except ValueError:
            return _bad_request("Malformed request body")
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            return _bad_request("'events' must be a non-empty list")
        answered: list[dict[str, Any]] = []
        for event in events:
            if not isinstance(event, dict):
                return _bad_request("each event must be an object")
            name, server, status = event.get("name"), event.get("server_uuid"), \
                event.get("status", "completed")
            if name not in EVENT_NAMES or status not in EVENT_STATUSES or \
                    not isinstance(server, str):
                return _bad_request(f"Invalid input for event: {event!r}")
            tag = str(event.get("tag", ""))
            accepted = book.accept(name, server, tag, status, t)
            answered.append({**event, "status": status, "code": 200 if accepted else 404})
        codes = {e["code"] for e in answered}
        if codes == {404}:
            return _not_found("No instances found for any event")
        return JSONResponse({"events": answered}, status_code=200 if codes == {200} else 207)

    async def versions(request: Request) -> JSONResponse:
        return JSONResponse({"version": {"id": "v2.1", "status": "CURRENT",
                                         "min_version": "2.1", "version": "2.93"}})

    return Starlette(routes=[
        Route(f"{prefix}/os-server-external-events", external_events, methods=["POST"]),
        Route(f"{prefix}/" if prefix else "/", versions, methods=["GET"]),
    ])


def split_nova_url(url: str) -> tuple[str, int, str]:
    """`http://127.0.0.1:8774/v2.1` -> ("127.0.0.1", 8774, "/v2.1")."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ComputeError(f"Nova URL must look like http://host:port/v2.1, not {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


class _QuietServer(uvicorn.Server):
    # The storm owns SIGINT/SIGTERM; uvicorn must not swallow them.
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


class NovaEndpoint:
    """The app served by uvicorn as a named task on the running loop."""

    def __init__(self, book: EventBook, url: str) -> None:
        self.book = book
        host, port, prefix = split_nova_url(url)
        config = uvicorn.Config(create_app(book, prefix), host=host, port=port,
                                log_level="warning", lifespan="off", access_log=False)
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None
        self.host, self.port, self.prefix = host, port, prefix
        self.address = f"{host}:{port}"

    async def start(self, timeout: float = 10.0) -> None:
        # Bind here: uvicorn answers a bind error with sys.exit(), which would
        # escape the task and stop the whole loop.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ComputeError(f"cannot listen for Nova events on {self.address}: "
                               f"{exc.strerror}") from exc
        sock.setblocking(False)
        self.port = sock.getsockname()[1]  # port 0 picks a free one
        self.address = f"{self.host}:{self.port}"
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]),
                                         name="nova-events:serve")
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._task.done() or time.monotonic() > deadline:
                await self.stop()
                raise ComputeError(f"Nova event endpoint on {self.address} did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        except (TimeoutError, SystemExit, Exception):
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._task = None

    @property
    def url(self) -> str:
        return f"http://{self.address}{self.prefix}"

    async def __aenter__(self) -> NovaEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
