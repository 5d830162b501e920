"""The Nova API process: `os-server-external-events`, served apart from the storm.

Real Nova's API is its own service; here it is its own process too, so an
event is stamped the moment it arrives instead of waiting in a socket while the
storm's busy loop builds VMs. The storm (`nova_events.NovaEndpoint`) starts

    python -m vifwire.compute.nova_server --fd N --url http://host:port/v2.1

with one end of a socketpair as fd N. Lines of JSON go both ways:

* storm -> here: `{"op": "expect"|"forget", "server": uuid}`, the instances
  Nova knows (events for others are answered 404, as Nova does);
* here -> storm: first `{"ready": port}` or `{"error": "one line"}`, then one
  `{"name", "server", "tag", "status", "t"}` per accepted event, `t` being
  `time.time()` at receipt.

Invariants: an instance is always announced before its port exists, and on a
miss the control socket is drained before answering, so no event is refused
for an instance the storm already expects. When the storm's end closes (a stop,
or the storm process dying) this process exits: it can never outlive a storm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import time
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vifwire.compute.nova_events import EVENT_NAMES, EVENT_STATUSES, split_nova_url


class ServerRegistry:
    """The instances Nova knows, fed by the storm; accepted events go back to it."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.servers: set[str] = set()
        self.closed = asyncio.Event()
        self._buffer = b""

    def drain(self) -> None:
        """Apply every control line already sent; never blocks."""
        while True:
            try:
                chunk = self.control.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.closed.set()
                return
            lines = (self._buffer + chunk).split(b"\n")
            self._buffer = lines.pop()
            for line in lines:
                message = orjson.loads(line)
                if message["op"] == "expect":
                    self.servers.add(message["server"])
                elif message["op"] == "forget":
                    self.servers.discard(message["server"])

    def accept(self, name: str, server_uuid: str, tag: str, status: str, t: float) -> bool:
        if server_uuid not in self.servers:
            self.drain()
            if server_uuid not in self.servers:
                return False
        event = {"name": name, "server": server_uuid, "tag": tag, "status": status, "t": t}
        with contextlib.suppress(OSError):  # the storm is gone: we are about to exit
            self.control.sendall(orjson.dumps(event) + b"\n")
        return True


def _not_found(message: str) -> JSONResponse:
    return JSONResponse({"itemNotFound": {"code": 404, "message": message}}, status_code=404)


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"badRequest": {"code": 400, "message": message}}, status_code=400)


def create_app(registry: ServerRegistry, prefix: str = "/v2.1") -> Starlette:
    """Answers like Nova: per-event codes; 200 all accepted, 207 some, 404 none."""
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
            accepted = registry.accept(name, server, tag, status, t)
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


class _QuietServer(uvicorn.Server):
    # The storm owns this process's life (its socket closing); signals from a
    # terminal's Ctrl-C are the storm's to handle.
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


def _listen(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections
    # only when the socket says it is TCP; without it, each response waits ~40 ms
    # on Nagle + delayed ACK, and the notifier's next post waits with it.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    control.sendall(orjson.dumps(message) + b"\n")


async def serve(control: socket.socket, url: str) -> int:
    host, port, prefix = split_nova_url(url)
    try:
        listener = _listen(host, port)
    except OSError as exc:
        _send(control, {"error": f"cannot listen for Nova events on {host}:{port}: "
                                 f"{exc.strerror}"})
        return 1
    registry = ServerRegistry(control)
    server = _QuietServer(uvicorn.Config(
        create_app(registry, prefix), log_level="warning", lifespan="off", access_log=False,
        timeout_graceful_shutdown=1))
    loop = asyncio.get_running_loop()
    loop.add_reader(control.fileno(), registry.drain)
    stopper = asyncio.create_task(_stop_when_closed(registry, server), name="nova:stopper")
    _send(control, {"ready": listener.getsockname()[1]})
    try:
        await server.serve(sockets=[listener])
    finally:
        stopper.cancel()
        loop.remove_reader(control.fileno())
    return 0


async def _stop_when_closed(registry: ServerRegistry, server: uvicorn.Server) -> None:
    await registry.closed.wait()
    server.should_exit = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="the storm's control socket")
    parser.add_argument("--url", required=True, help="Nova API base, http://host:port/v2.1")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the storm decides when we stop
    control = socket.socket(fileno=args.fd)
    with control:
        try:
            return asyncio.run(serve(control, args.url))
        except (BrokenPipeError, ConnectionResetError):
            return 0  # the storm went away first (e.g. it failed fast): nothing to report


if __name__ == "__main__":
    sys.exit(main())
