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
  `time.time()` at receipt, with `"repeat": true` for a repeat (below).

A post whose `X-Vifwire-Event-Revisions` header (`vifwire.nova_revisions`)
fits its events is acted on once per transition, (server, tag, name,
revision): a repeat (the notifier posts again what a SIGKILL left unsettled)
is answered exactly as the first, 200, but only reported as a repeat, never
acted on again. Posts without the header, or with one that does not fit the
body (logged once, at debug), are acted on as they come, as real Nova acts on
them. The transitions are kept per instance the storm expects, at most
MAX_TRANSITIONS_PER_SERVER each (the oldest go first), and dropped with the
instance when the storm forgets it.

Like Nova's API pipeline, a request is authenticated before its body is read:
`X-Auth-Token` must equal the run dir's token (`vifwire.nova_token`, read from
`--token-file`), else 401 -- or, with `--keystone-file`, be a Keystone token of a
user with the admin or service role (401 unknown, 403 without the role); then a
body larger than Nova's limit (oslo.middleware's `max_request_body_size`, 114,688
bytes) is refused with 413 as soon as its
Content-Length, or the bytes read so far, exceed it, so a huge post costs no
memory. Events are checked against Nova's schema (name and status from its
enums, `server_uuid` a UUID, `tag` a string of at most 255 characters, no
other keys): anything else is a 400 that changes nothing.

Invariants: an instance is always announced before its port exists, and on a
miss the control socket is drained before answering, so no event is refused
for an instance the storm already expects. When the storm's end closes (a stop,
or the storm process dying) this process exits: it can never outlive a storm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import signal
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vifwire import nova_revisions
from vifwire.compute.nova_events import EVENT_NAMES, EVENT_STATUSES, split_nova_url
from vifwire.keystone import KeystoneUnavailable, TokenValidator
from vifwire.nova_token import HEADER
from vifwire.settings import KeystoneCredentials

# oslo.middleware's [oslo_middleware] max_request_body_size default, which Nova's
# API pipeline applies (sizelimit filter).
MAX_BODY_BYTES = 114_688
EVENT_KEYS = frozenset({"name", "server_uuid", "tag", "status"})
MAX_TAG_LENGTH = 255
# Who may post events when tokens are Keystone's: Nova's admin_api, and the service role.
EVENT_ROLES = frozenset({"admin", "service"})
# Transitions remembered per instance: a VM has a handful (plugged, unplugged per
# move or restart, deleted); this bounds one that flaps for days.
MAX_TRANSITIONS_PER_SERVER = 1024

log = logging.getLogger(__name__)


class ServerRegistry:
    """The instances Nova knows, fed by the storm; accepted events go back to it."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.servers: set[str] = set()
        # Per instance: the transitions (tag, name, revision) acted on, oldest first.
        self.acted: dict[str, dict[tuple[str, str, int], None]] = {}
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
                    self.acted.pop(message["server"], None)

    def accept(self, name: str, server_uuid: str, tag: str, status: str, t: float,
               revision: int | None = None) -> bool:
        """True (code 200) if Nova knows the instance; the event is acted on (sent to
        the storm) unless its transition, named by `revision`, already was."""
        if server_uuid not in self.servers:
            self.drain()
            if server_uuid not in self.servers:
                return False
        event: dict[str, Any] = {"name": name, "server": server_uuid, "tag": tag,
                                 "status": status, "t": t}
        if revision is not None and self._repeated(server_uuid, (tag, name, revision)):
            event["repeat"] = True  # answered, not acted on: counted by the storm
        with contextlib.suppress(OSError):  # the storm is gone: we are about to exit
            self.control.sendall(orjson.dumps(event) + b"\n")
        return True

    def _repeated(self, server_uuid: str, transition: tuple[str, str, int]) -> bool:
        """Whether `transition` was acted on already; records it if not."""
        acted = self.acted.setdefault(server_uuid, {})
        if transition in acted:
            return True
        acted[transition] = None
        if len(acted) > MAX_TRANSITIONS_PER_SERVER:
            del acted[next(iter(acted))]
        return False


def _not_found(message: str) -> JSONResponse:
    return JSONResponse({"itemNotFound": {"code": 404, "message": message}}, status_code=404)


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"badRequest": {"code": 400, "message": message}}, status_code=400)


def _unauthorized() -> JSONResponse:
    # keystonemiddleware's answer when a token is missing or invalid.
    return JSONResponse({"error": {"code": 401, "title": "Unauthorized",
                                   "message": "The request you have made requires "
                                              "authentication."}},
                        status_code=401, headers={"WWW-Authenticate": "Keystone uri=''"})


def _too_large() -> JSONResponse:
    return JSONResponse({"overLimit": {"code": 413, "message": "Request is too large."}},
                        status_code=413, headers={"Connection": "close"})


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _invalid(event: object) -> str | None:
    """Why `event` breaks Nova's schema for one external event, or None."""
    if not isinstance(event, dict):
        return "each event must be an object"
    extra = set(event) - EVENT_KEYS
    if extra:
        return f"Additional properties are not allowed ({', '.join(sorted(extra))})"
    if event.get("name") not in EVENT_NAMES:
        return f"Invalid event name {event.get('name')!r}"
    if event.get("status", "completed") not in EVENT_STATUSES:
        return f"Invalid event status {event.get('status')!r}"
    if not _is_uuid(event.get("server_uuid")):
        return f"Invalid server_uuid {event.get('server_uuid')!r}: not a UUID"
    tag = event.get("tag", "")
    if not isinstance(tag, str) or len(tag) > MAX_TAG_LENGTH:
        return f"Invalid tag: a string of at most {MAX_TAG_LENGTH} characters"
    return None


def create_app(registry: ServerRegistry, prefix: str = "/v2.1", token: str | None = None,
               max_body: int = MAX_BODY_BYTES,
               keystone: TokenValidator | None = None) -> Starlette:
    """Answers like Nova: per-event codes; 200 all accepted, 207 some, 404 none.

    With `token`, a request without that `X-Auth-Token` is refused (401) unread.
    With `keystone`, the X-Auth-Token is a Keystone token instead: unknown, 401; a
    user without the admin or service role, 403 (Nova's admin_api rule for external
    events); Keystone unreachable, 503.
    """
    prefix = prefix.rstrip("/")
    expected = token.encode() if token else None
    misfit_logged = False

    async def refusal(request: Request) -> JSONResponse | None:
        given = request.headers.get(HEADER, "")
        if keystone is not None:
            try:
                info = await keystone.validate(given) if given else None
            except KeystoneUnavailable:
                return JSONResponse({"error": {"code": 503, "message": "Keystone unavailable"}},
                                    status_code=503)
            if info is None:
                return _unauthorized()
            if not info.roles & EVENT_ROLES:
                return JSONResponse({"forbidden": {"code": 403, "message": (
                    "Policy doesn't allow os_compute_api:os-server-external-events:create "
                    "to be performed.")}}, status_code=403)
            return None
        if expected is None or hmac.compare_digest(given.encode("latin-1", "replace"), expected):
            return None
        return _unauthorized()

    def revisions(request: Request, count: int) -> list[int] | None:
        """The header's revisions; None if absent or not fitting (then ignored, as
        real Nova ignores it: the post is acted on as without it)."""
        nonlocal misfit_logged
        value = request.headers.get(nova_revisions.HEADER)
        parsed = nova_revisions.parse_revisions(value, count)
        if parsed is None and value is not None and not misfit_logged:
            misfit_logged = True
            log.debug("ignoring a %s header that does not fit %d events: %.80r",
                      nova_revisions.HEADER, count, value)
        return parsed

    async def external_events(request: Request) -> JSONResponse:
        t = time.time()
        refused = await refusal(request)
        if refused is not None:
            return refused
        raw = await _read_limited(request, max_body)
        if raw is None:
            return _too_large()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _bad_request("Malformed request body")
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            return _bad_request("'events' must be a non-empty list")
        for event in events:  # all checked before any is accepted: a 400 changes nothing
            problem = _invalid(event)
            if problem:
                return _bad_request(f"Invalid input for event: {problem}")
        answered: list[dict[str, Any]] = []
        transitions = revisions(request, len(events))
        for i, event in enumerate(events):
            name, server, status = event["name"], event["server_uuid"], \
                event.get("status", "completed")
            tag = event.get("tag", "")
            accepted = registry.accept(name, server, tag, status, t,
                                       transitions[i] if transitions else None)
            answered.append({**event, "status": status, "code": 200 if accepted else 404})
        codes = {e["code"] for e in answered}
        if codes == {404}:
            return _not_found("No instances found for any event")
        return JSONResponse({"events": answered}, status_code=200 if codes == {200} else 207)

    async def versions(request: Request) -> JSONResponse:  # Nova's root needs no token
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


async def serve(control: socket.socket, url: str, token: str | None = None,
                keystone: KeystoneCredentials | None = None) -> int:
    host, port, prefix = split_nova_url(url)
    try:
        listener = _listen(host, port)
    except OSError as exc:
        _send(control, {"error": f"cannot listen for Nova events on {host}:{port}: "
                                 f"{exc.strerror}"})
        return 1
    registry = ServerRegistry(control)
    server = _QuietServer(uvicorn.Config(
        create_app(registry, prefix, token,
                   keystone=TokenValidator(keystone) if keystone else None),
        log_level="warning", lifespan="off", access_log=False,
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
    parser.add_argument("--token-file", type=Path,
                        help="accept only requests whose X-Auth-Token is this file's content")
    parser.add_argument("--keystone-file", type=Path,
                        help="accept Keystone tokens instead: a JSON file of the service "
                             "user that validates them (auth_url, username, password, "
                             "project_name, user_domain_name, project_domain_name)")
    args = parser.parse_args(argv)
    token = args.token_file.read_text().strip() if args.token_file else None
    keystone = (KeystoneCredentials(**orjson.loads(args.keystone_file.read_bytes()))
                if args.keystone_file else None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the storm decides when we stop
    control = socket.socket(fileno=args.fd)
    with control:
        try:
            return asyncio.run(serve(control, args.url, token, keystone))
        except (BrokenPipeError, ConnectionResetError):
            return 0  # the storm went away first (e.g. it failed fast): nothing to report


if __name__ == "__main__":
    sys.exit(main())
