"""A tiny real TCP proxy that makes Neutron briefly unreachable, on demand.

Between the storm and a real vifwire server: it pipes bytes both ways, and
can (1) go down for a while, refusing new connections (its listener closed)
and cutting the open ones, as a restarting server does, and (2) lose the
answer of the next `lose_answers` requests whose first line starts with a
given prefix: the request reaches the server (which acts on it), then both
connections are cut before a byte of the answer reaches the client.

Request boundaries are found the cheap way: a client chunk that starts with
the prefix opens a request (httpx writes a request's head in one write and
waits for the answer before reusing a connection).
"""

from __future__ import annotations

import asyncio
import contextlib


class FlakyProxy:
    def __init__(self, upstream_port: int, lose_prefix: bytes = b"POST /v2.0/ports ") -> None:
        self.upstream_port = upstream_port
        self.lose_prefix = lose_prefix
        self.lose_answers = 0
        self.lost = 0  # answers dropped so far
        self.refused_for_s = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def outage(self, seconds: float) -> None:
        """Down for `seconds`: connections refused and the open ones cut; then back."""
        await self.stop()
        self.refused_for_s += seconds
        await asyncio.sleep(seconds)
        await self.start()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        doomed = asyncio.Event()  # set: cut both ends on the answer's first byte

        async def to_server() -> None:
            while chunk := await reader.read(65536):
                if chunk.startswith(self.lose_prefix) and self.lose_answers > 0:
                    self.lose_answers -= 1
                    doomed.set()
                up_writer.write(chunk)
                await up_writer.drain()

        async def to_client() -> None:
            while chunk := await up_reader.read(65536):
                if doomed.is_set():
                    self.lost += 1
                    return
                writer.write(chunk)
                await writer.drain()

        pipes = [asyncio.create_task(to_server()), asyncio.create_task(to_client())]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*pipes, return_exceptions=True)
