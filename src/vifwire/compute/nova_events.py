"""A Nova-compatible `os-server-external-events` endpoint, and the storm's event book.

Neutron's notifier tells Nova a port is wired by posting
`{"events": [{"name": "network-vif-plugged", "server_uuid": ..., "tag": port_id,
"status": "completed"}]}` to `{nova_url}/os-server-external-events`. The
endpoint answers like Nova: each event is echoed back with a per-event `code`
(200, or 404 for a server it does not know), and the response is 200 when all
were accepted, 207 when some were, 404 when none were.

Design: the HTTP side runs in its own process (`nova_server`; real Nova's API
is a separate service too), so an event is stamped with `time.time()` the
moment it arrives, however busy the storm's loop is. `NovaEndpoint` starts
that process, tells it which instances exist, and reads the accepted events
back over a socketpair on the storm's loop. One `EventBook` per storm keeps
them keyed by `(name, tag)` with their receipt stamps (a repeat of a transition
already acted on is only counted, in `repeats`); `wait(name, tag)`
returns that stamp, whether the event arrived before or after the wait began
(an early event is never lost). The process is stopped and reaped by
`stop()`, and exits by itself if the storm's end of the socket closes.
Given a token file (`vifwire.nova_token`), the process accepts only posts
carrying that token; the storm always gives its run dir's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from vifwire.compute.errors import ComputeError, EventTimeout
from vifwire.trace import NullTracer, Stage, Tracer

# Nova's accepted names (nova/api/openstack/compute/schemas/server_external_events.py).
EVENT_NAMES = frozenset({
    "network-changed", "network-vif-plugged", "network-vif-unplugged", "network-vif-deleted",
    "volume-extended", "power-update", "accelerator-request-bound", "volume-reimaged",
})
EVENT_STATUSES = frozenset({"completed", "failed", "in-progress"})
VIF_PLUGGED = "network-vif-plugged"
SERVER_MODULE = "vifwire.compute.nova_server"


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
        # Every event acted on, duplicates too (the chaos bench counts them).
        self.counts: Counter[tuple[str, str]] = Counter()
        # Repeats of a transition already acted on (nova_server): answered, not acted
        # on; the chaos bench reports them next to the duplicates.
        self.repeats: Counter[tuple[str, str]] = Counter()
        self._waiters: dict[tuple[str, str], asyncio.Future[ReceivedEvent]] = {}
        # Tells the endpoint process which instances exist (set by NovaEndpoint).
        self.announce: Callable[[str, str], None] | None = None
        self.failure: ComputeError | None = None  # the endpoint died: no event will come

    def expect_server(self, server_uuid: str) -> None:
        self.servers.add(server_uuid)
        if self.announce is not None:
            self.announce("expect", server_uuid)

    def forget_server(self, server_uuid: str) -> None:
        self.servers.discard(server_uuid)
        if self.announce is not None:
            self.announce("forget", server_uuid)

    def accept(self, name: str, server_uuid: str, tag: str, status: str, t: float) -> bool:
        if server_uuid not in self.servers:
            return False
        event = ReceivedEvent(name, server_uuid, tag, status, t)
        self.counts[(name, tag)] += 1
        self.received.setdefault((name, tag), event)  # the first one counts
        if name == VIF_PLUGGED:
            self.tracer.mark(Stage.EVENT_RECEIVED, tag, t=t, status=status)
        waiter = self._waiters.get((name, tag))
        if waiter is not None and not waiter.done():
            waiter.set_result(self.received[(name, tag)])
        return True

    def fail(self, error: ComputeError) -> None:
        """No event can arrive any more: fail every waiter now, not at its timeout."""
        self.failure = error
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)

    async def wait(self, name: str, tag: str, timeout: float | None) -> ReceivedEvent:
        """The event `name` for `tag`, already received or the next to come."""
        key = (name, tag)
        if key in self.received:
            return self.received[key]
        if self.failure is not None:
            raise self.failure
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


def split_nova_url(url: str) -> tuple[str, int, str]:
    """`http://127.0.0.1:8774/v2.1` -> ("127.0.0.1", 8774, "/v2.1")."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ComputeError(f"Nova URL must look like http://host:port/v2.1, not {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


class NovaEndpoint:
    """The `nova_server` process, and the storm's end of its socket."""

    def __init__(self, book: EventBook, url: str, start_timeout: float = 30.0,
                 token_file: Path | None = None, keystone_file: Path | None = None) -> None:
        """`keystone_file`: the JSON credentials of a service user that makes the
        endpoint demand Keystone tokens (`nova_server --keystone-file`)."""
        self.book = book
        self.token_file = token_file
        self.keystone_file = keystone_file
        self.host, self.port, self.prefix = split_nova_url(url)
        self.address = f"{self.host}:{self.port}"
        self.start_timeout = start_timeout
        self.process: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._ready: asyncio.Future[int] | None = None

    async def spawn(self) -> None:
        """Start the process; `started()` waits until it listens."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        # The file's name, never the token, on the command line (ps shows it).
        auth = ["--token-file", str(self.token_file)] if self.token_file else []
        if self.keystone_file is not None:
            auth += ["--keystone-file", str(self.keystone_file)]
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", SERVER_MODULE, "--fd", str(theirs.fileno()),
                "--url", f"http://{self.address}{self.prefix}", *auth,
                pass_fds=[theirs.fileno()], stdin=asyncio.subprocess.DEVNULL)
        except OSError as exc:
            ours.close()
            raise ComputeError(f"cannot start the Nova event endpoint: {exc}") from exc
        finally:
            theirs.close()
        self._sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        self.book.announce = self._announce

    async def started(self) -> None:
        assert self._ready is not None, "spawn() first"
        try:
            self.port = await asyncio.wait_for(asyncio.shield(self._ready), self.start_timeout)
        except TimeoutError:
            await self.stop()
            raise ComputeError(f"Nova event endpoint on {self.address} did not start "
                               f"within {self.start_timeout:g}s") from None
        except ComputeError:
            await self.stop()
            raise
        self.address = f"{self.host}:{self.port}"  # port 0 picks a free one

    async def start(self) -> None:
        await self.spawn()
        await self.started()

    def _announce(self, op: str, server_uuid: str) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # gone: _on_readable reports it
                self._sock.sendall(orjson.dumps({"op": op, "server": server_uuid}) + b"\n")

    def _on_readable(self) -> None:
        assert self._sock is not None
        try:
            chunk = self._sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._closed()
            return
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            self._message(orjson.loads(line))

    def _message(self, message: dict[str, Any]) -> None:
        if message.get("repeat"):
            self.book.repeats[(message["name"], message["tag"])] += 1
        elif "t" in message:
            self.book.accept(message["name"], message["server"], message["tag"],
                             message["status"], message["t"])
        elif self._ready is not None and not self._ready.done():
            if "error" in message:
                self._ready.set_exception(ComputeError(message["error"]))
            else:
                self._ready.set_result(int(message["ready"]))

    def _closed(self) -> None:
        assert self._sock is not None
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        error = ComputeError(f"the Nova event endpoint on {self.address} exited")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                ComputeError(f"Nova event endpoint on {self.address} did not start"))
        else:
            self.book.fail(error)

    async def stop(self, timeout: float = 5.0) -> None:
        """Close our end (the process exits on EOF), then reap it; kill if it lingers."""
        self.book.announce = None
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(ValueError, RuntimeError):  # loop already closed
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        process, self.process = self.process, None
        if process is None:
            return
        waiting = asyncio.ensure_future(process.wait())
        try:
            await asyncio.wait_for(asyncio.shield(waiting), timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await waiting
            if isinstance(exc, asyncio.CancelledError):
                raise

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def url(self) -> str:
        return f"http://{self.address}{self.prefix}"

    async def __aenter__(self) -> NovaEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
