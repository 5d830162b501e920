"""uvicorn's httptools protocol, sending each response in one write instead of two.

uvicorn writes a response's status line and headers when the app sends
`http.response.start`, and the body when it sends `http.response.body`: two
`send()` syscalls, two TCP segments and two wake-ups of the client, for every
request. Every VM a storm boots costs two requests, so that second write is paid
twice per VM. Here the connection's transport holds what is written during one
turn of the event loop and hands it on in one write at the end of that turn;
both messages of a response are sent in the same turn, so they leave together.
Nothing waits longer than the current turn, and a close sends what is held first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TurnBufferedTransport:
    """A transport whose writes within one loop turn go out as one write."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def __getattr__(self, name: str) -> Any:
        # Everything else (extra info, pause/resume reading, is_closing) is the socket's.
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        buffered = TurnBufferedTransport(transport, self.loop)
        super().connection_made(buffered)  # type: ignore[arg-type]


def server_config(app: Any, host: str, port: int) -> uvicorn.Config:
    """How the API is served, by the stack and by the tests that speak real HTTP to it."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                          access_log=False, http=OneWriteHttpToolsProtocol,
                          # No proxy in front: skip the proxy-headers layer.
                          proxy_headers=False)
