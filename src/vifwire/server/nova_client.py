"""A keep-alive HTTP/1.1 client for one Nova URL: post JSON, get status and body.

The notifier makes one small POST at a time to one fixed URL. httpx's general
machinery (URL and header models, auth and redirect flows, pool bookkeeping)
cost it ~0.7 ms of CPU per post, as much as serving an API request; this client
keeps one connection open and lets h11 (uvicorn's own HTTP parser) frame the
messages, for a fraction of that.

A connection the server closed while idle is noticed on the next post, which
then reconnects once: only when nothing of the response had arrived, so a post
is never repeated after Nova may have answered it.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import h11
import orjson

READ_CHUNK = 65536


class NovaUnreachable(Exception):
    """Nova could not be reached or broke the connection mid-answer."""


class NovaClient:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// Nova URLs are supported, not {url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._host_header = parts.netloc
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
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
            self._conn = h11.Connection(h11.CLIENT)
        assert self._reader is not None and self._conn is not None
        conn, writer = self._conn, self._writer
        request = h11.Request(method="POST", target=self._target, headers=[
            ("Host", self._host_header), ("Content-Type", "application/json"),
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

    async def close(self) -> None:
        writer, self._reader, self._writer, self._conn = self._writer, None, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class _StaleConnection(Exception):
    """The server closed the connection before any byte of an answer."""
