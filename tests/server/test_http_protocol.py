"""The API's HTTP protocol sends each response in one write, and loses nothing doing so."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from vifwire.api.http_protocol import TurnBufferedTransport, server_config


class RecordingTransport:
    """Stands in for the socket's transport: records what reaches it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_writes_of_one_loop_turn_leave_as_one() -> None:
    raw = RecordingTransport()
    buffered = TurnBufferedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    buffered.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    buffered.write(b"{}")
    assert raw.writes == [] and buffered.get_write_buffer_size() == 40
    await asyncio.sleep(0)  # the end of this turn
    assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    buffered.write(b"next")
    await asyncio.sleep(0)
    assert raw.writes[1:] == [b"next"]
    assert buffered.get_extra_info("peername") == "info:peername"


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    raw = RecordingTransport()
    buffered = TurnBufferedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    buffered.write(b"last words")
    buffered.close()
    assert raw.writes == [b"last words"] and raw.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing more to send
    assert raw.writes == [b"last words"]

    raw = RecordingTransport()
    buffered = TurnBufferedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    buffered.write(b"never mind")
    buffered.abort()
    await asyncio.sleep(0)
    assert raw.writes == [] and raw.aborted


async def _app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    if scope["type"] != "http":
        return
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})  # type: ignore[operator]


async def test_responses_arrive_whole_on_a_kept_alive_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = server_config(_app, "127.0.0.1", port)
    config.lifespan = "off"
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for path in ("/a", "/bb", "/ccc"):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert await reader.readexactly(len(path)) == path.encode()
        writer.close()
    finally:
        server.should_exit = True
        await serving
