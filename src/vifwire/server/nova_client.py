"""A keep-alive HTTP/1.1 client for one Nova URL: post JSON, get status and body.

The notifier makes one small POST at a time to one fixed URL. httpx's general
machinery (URL and header models, auth and redirect flows, pool bookkeeping)
cost it ~0.7 ms of CPU per post, as much as serving an API request; this client
keeps one connection open and lets h11 (uvicorn's own HTTP parser) frame the
messages, for a fraction of that.

`http://` and `https://` URLs are supported; https verifies Nova's certificate
against the system CAs (`ssl.create_default_context()`) or a caller's
`ssl.SSLContext`, with the URL's host as the expected name. Either way the loop
(asyncio's or uvloop's, the stack's) sets TCP_NODELAY on the socket, so a small
post is not held back by Nagle.
`parse_url` checks a URL up front, so a bad one is one clear error at start.

A connection the server closed while idle is noticed on the next post, which
then reconnects once: only when nothing of the response had arrived, so a post
is never repeated after Nova may have answered it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import orjson

READ_CHUNK = 65536
DEFAULT_PORTS = {"http": 80, "https": 443}


class NovaUrlError(ValueError):
    """A Nova URL the client cannot post to (scheme, host or port)."""


@dataclass(frozen=True)
class NovaTarget:
    """Where a post goes: the connection's end and the request's target."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as in the request line
    host_header: str

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def parse_url(url: str) -> NovaTarget:
    """Split an http(s) URL; NovaUrlError says in one line what is wrong with it."""
    if not url or any(c.isspace() for c in url):
        raise NovaUrlError(f"Nova URL {url!r} is empty or contains spaces")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. a bracketed host that is no IPv6 address
        raise NovaUrlError(f"Nova URL {url!r} is malformed: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise NovaUrlError(f"Nova URL {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise NovaUrlError(f"Nova URL {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise NovaUrlError(f"Nova URL {url!r} must not carry credentials")
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        raise NovaUrlError(f"Nova URL {url!r} has a bad port (want 1-65535)")
    return NovaTarget(
        scheme=parts.scheme, host=parts.hostname, port=port or DEFAULT_PORTS[parts.scheme],
        target=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        host_header=parts.netloc)


class NovaUnreachable(Exception):
    """Nova could not be reached or broke the connection mid-answer."""


class NovaClient:
    def __init__(self, url: str, timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        """`ssl_context` is for https URLs (e.g. a private CA); default: the system CAs."""
        self._url = parse_url(url)
        self._ssl: ssl.SSLContext | None = None
        if self._url.tls:
            self._ssl = ssl_context or ssl.create_default_context()
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._conn: h11.Connection | None = None

    async def post_json(self, body: object) -> tuple[int, bytes]:
        payload = orjson.dumps(body)
        reused = self._writer is not None
        try:
            return await asyncio.wait_for(self._exchange(payload), self._timeout)
        except _StaleConnection:
            if not reused:
                raise NovaUnreachable("the connection closed before Nova answered") from None
        except (OSError, h11.ProtocolError, TimeoutError) as exc:
            await self.close()
            raise NovaUnreachable(f"{type(exc).__name__}: {exc}") from exc
        # The server had closed the idle connection: one fresh try.
        try:
            return await asyncio.wait_for(self._exchange(payload), self._timeout)
        except (_StaleConnection, OSError, h11.ProtocolError, TimeoutError) as exc:
            await self.close()
            raise NovaUnreachable(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, payload: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await self._connect()
            self._conn = h11.Connection(h11.CLIENT)
        assert self._reader is not None and self._conn is not None
        conn, writer = self._conn, self._writer
        request = h11.Request(method="POST", target=self._url.target, headers=[
            ("Host", self._url.host_header), ("Content-Type", "application/json"),
            ("Accept", "application/json"), ("Content-Length", str(len(payload)))])
        status, body, received = 0, bytearray(), False
        try:
            writer.write(conn.send(request) + conn.send(h11.Data(data=payload))
                         + conn.send(h11.EndOfMessage()))
            await writer.drain()
            first = await self._reader.read(READ_CHUNK)
        except (ConnectionResetError, BrokenPipeError):
            await self.close()
            raise _StaleConnection from None
        pending = [first]
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                chunk = pending.pop() if pending else await self._reader.read(READ_CHUNK)
                if not chunk and not received:
                    await self.close()
                    raise _StaleConnection
                received = received or bool(chunk)
                conn.receive_data(chunk)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                await self.close()  # so the next post starts on a fresh connection
                raise NovaUnreachable("Nova closed the connection mid-answer")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.close()
        return status, bytes(body)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self._url.host, self._url.port
        if self._ssl is None:
            return await asyncio.open_connection(host, port)
        # The shutdown timeout bounds close(): a TLS close waits for Nova's
        # close_notify, 30 s by default if Nova never sends it.
        return await asyncio.open_connection(
            host, port, ssl=self._ssl, server_hostname=host,
            ssl_handshake_timeout=self._timeout, ssl_shutdown_timeout=self._timeout)

    async def close(self) -> None:
        writer, self._reader, self._writer, self._conn = self._writer, None, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class _StaleConnection(Exception):
    """The server closed the connection before any byte of an answer."""
