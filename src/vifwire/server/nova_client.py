"""A keep-alive HTTP/1.1 client for one Nova URL: post JSON, get status and body.

The notifier makes one small POST at a time to one fixed URL, about one per VM
in a boot storm. httpx's general machinery (URL and header models, auth and
redirect flows, pool bookkeeping) cost it ~0.7 ms of CPU per post, as much as
serving an API request. This client keeps one connection open as an asyncio
protocol: the request head is built once per URL, and the answer is parsed by
httptools (llhttp, uvicorn's C parser) as it arrives, with no stream or task in
between.

`http://` and `https://` URLs are supported; https verifies Nova's certificate
against the system CAs (`ssl.create_default_context()`) or a caller's
`ssl.SSLContext`, with the URL's host as the expected name. Either way the loop
(asyncio's or uvloop's, the stack's) sets TCP_NODELAY on the socket, so a small
post is not held back by Nagle.
`parse_url` checks a URL up front, so a bad one is one clear error at start.

A connection the server closed while idle is noticed on the next post, which
then reconnects once: only when nothing of the response had arrived, so a post
is never repeated after Nova may have answered it.

`HttpxNovaClient` is the plain library path (`Settings.nova_client = "httpx"`):
the same interface on httpx, for A/B measurement (bench/http_ab.py) and as the
fallback should httptools or this protocol misbehave.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import httpx
import orjson

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
    if not url.isascii():
        raise NovaUrlError(f"Nova URL {url!r} must be ASCII (percent-encode the rest)")
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


class _StaleConnection(Exception):
    """The server closed the connection before any byte of an answer."""


class _Connection(asyncio.Protocol):
    """One connection to Nova: one request at a time, its answer parsed as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = loop.create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._body = bytearray()
        self._received = False
        self._headers_done = False
        self._framed = False  # a Content-Length or chunked body; else it ends at close
        self.keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self._fail(NovaUnreachable("Nova sent data nobody asked for"))
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(NovaUnreachable("Nova switched protocols (101) instead of answering"))
        except httptools.HttpParserError as exc:
            self._fail(NovaUnreachable(f"Nova's answer is not HTTP: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._answer is None or self._answer.done():
            return
        if self._headers_done and not self._framed and exc is None:
            # HTTP/1.0 style: a clean close ends the body (a reset cuts it).
            self.keep_alive = False
            self._answer.set_result((self._parser.get_status_code(), bytes(self._body)))
        else:
            self._answer.set_exception(
                NovaUnreachable("Nova closed the connection mid-answer") if self._received
                else _StaleConnection())

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (
                name == b"transfer-encoding" and value.strip().lower() != b"identity"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        if 100 <= self._parser.get_status_code() < 200:
            # An interim answer (100 Continue, 103 Early Hints): the final one follows.
            self._body.clear()
            self._headers_done = self._framed = False
            return
        self.keep_alive = self._parser.should_keep_alive()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result((self._parser.get_status_code(), bytes(self._body)))

    def exchange(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Send `request`; the future gets Nova's (status, body)."""
        assert self.transport is not None
        self._answer = self._loop.create_future()
        self._body.clear()
        self._received = self._headers_done = self._framed = False
        self._parser = httptools.HttpResponseParser(self)
        if self.transport.is_closing():
            self._answer.set_exception(_StaleConnection())
        else:
            self.transport.write(request)
        return self._answer

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class NovaClient:
    def __init__(self, url: str, timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None, token: str | None = None) -> None:
        """`ssl_context` is for https URLs (e.g. a private CA); default: the system CAs.
        `token` is sent as X-Auth-Token (the run dir's, see vifwire.nova_token)."""
        self._url = parse_url(url)
        self._ssl: ssl.SSLContext | None = None
        if self._url.tls:
            self._ssl = ssl_context or ssl.create_default_context()
        self._timeout = timeout
        self.set_token(token)
        self._connection: _Connection | None = None

    def set_token(self, token: str | None) -> None:
        """The X-Auth-Token of the next posts (a Keystone token is renewed as it expires)."""
        self._head = (f"POST {self._url.target} HTTP/1.1\r\nHost: {self._url.host_header}\r\n"
                      "Content-Type: application/json\r\nAccept: application/json\r\n"
                      + (f"X-Auth-Token: {token}\r\n" if token else "")).encode("ascii")

    @property
    def transport(self) -> asyncio.Transport | None:
        """The open connection's transport, if any (for its socket and TLS details)."""
        return self._connection.transport if self._connection is not None else None

    async def post_json(self, body: object,
                        headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """`headers`: extra ones for this post (the caller's, ASCII, never CR or LF)."""
        payload = orjson.dumps(body)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) if headers else ""
        request = b"%s%sContent-Length: %d\r\n\r\n%s" % (
            self._head, extra.encode("ascii"), len(payload), payload)
        # A kept-alive connection Nova closed while idle earns one fresh try.
        reused = self._connection is not None and not self._connection.closed.done()
        for last in ((False, True) if reused else (True,)):
            try:
                return await self._exchange(request)  # drops the connection on any failure
            except _StaleConnection:
                if last:
                    raise NovaUnreachable("the connection closed before Nova answered") from None
            except (OSError, TimeoutError) as exc:
                raise NovaUnreachable(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(self._timeout):
                connection = self._connection
                if connection is None or connection.closed.done():
                    connection = self._connection = await self._connect()
                answer = await connection.exchange(request)
        except BaseException:
            # Timed out, cancelled or broken: an answer may still come on this
            # connection, and must never be read as the next post's.
            self._abandon()
            raise
        if not connection.keep_alive:
            # The next post starts on a fresh connection. Not awaited: the caller
            # records Nova's answer first (every moment before that is a window
            # in which a crash makes the post look undelivered).
            self._connection = None
            if connection.transport is not None:
                connection.transport.close()
        return answer

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port = self._url.host, self._url.port
        if self._ssl is None:
            transport, connection = await loop.create_connection(
                lambda: _Connection(loop), host, port)
        else:
            # The shutdown timeout bounds close(): a TLS close waits for Nova's
            # close_notify, 30 s by default if Nova never sends it.
            transport, connection = await loop.create_connection(
                lambda: _Connection(loop), host, port, ssl=self._ssl, server_hostname=host,
                ssl_handshake_timeout=self._timeout, ssl_shutdown_timeout=self._timeout)
        # uvloop may call connection_made only after create_connection returned.
        connection.transport = transport
        return connection

    def _abandon(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.abort()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None or connection.transport is None:
            return
        connection.transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout):
                await connection.closed


class HttpxNovaClient:
    """NovaClient's interface on httpx (one pooled keep-alive connection)."""

    def __init__(self, url: str, timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None, token: str | None = None) -> None:
        self._target = parse_url(url)
        self._url = url
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token is not None:  # Nova's (the emulator's) X-Auth-Token
            headers["X-Auth-Token"] = token
        self._client = httpx.AsyncClient(
            timeout=timeout, verify=ssl_context or True, trust_env=False,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            headers=headers)

    @property
    def transport(self) -> asyncio.Transport | None:
        return None  # httpx does not expose its socket

    def set_token(self, token: str | None) -> None:
        if token is None:
            self._client.headers.pop("X-Auth-Token", None)
        else:
            self._client.headers["X-Auth-Token"] = token

    async def post_json(self, body: object,
                        headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        try:
            # httpcore drops a connection whose exchange was cancelled or cut, and
            # retries a stale kept-alive one only before the request was sent.
            answer = await self._client.post(self._url, content=orjson.dumps(body),
                                             headers=headers)
        except httpx.HTTPError as exc:
            raise NovaUnreachable(f"{type(exc).__name__}: {exc}") from exc
        if answer.status_code == 101:
            raise NovaUnreachable("Nova switched protocols (101) instead of answering")
        return answer.status_code, answer.content

    async def close(self) -> None:
        await self._client.aclose()


NOVA_CLIENTS: dict[str, type[NovaClient] | type[HttpxNovaClient]] = {
    "httptools": NovaClient, "httpx": HttpxNovaClient}


def make_client(kind: str, url: str, timeout: float = 10.0,
                ssl_context: ssl.SSLContext | None = None,
                **extra: Any) -> NovaClient | HttpxNovaClient:
    """The client `Settings.nova_client` names; NovaUrlError for an unknown one.
    `extra` (e.g. token=...) goes to the client as is."""
    try:
        cls = NOVA_CLIENTS[kind]
    except KeyError:
        raise NovaUrlError(f"nova_client {kind!r} must be one of {sorted(NOVA_CLIENTS)}") from None
    return cls(url, timeout=timeout, ssl_context=ssl_context, **extra)
