"""The notifier's HTTP client against real sockets: keep-alive, a server that hangs up
between posts, and no server at all."""

import asyncio

import orjson
import pytest

from vifwire.server.nova_client import NovaClient, NovaUnreachable

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"


async def serve(close_after_each: bool, *, silent_hangup: bool = False
                ) -> tuple[asyncio.Server, list[bytes], list[int]]:
    """A tiny HTTP server that echoes the JSON body back and counts connections.

    close_after_each: answer with "Connection: close" and hang up;
    silent_hangup: answer as keep-alive, then hang up anyway (an idle timeout).
    """
    bodies: list[bytes] = []
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            body = await reader.readexactly(length)
            bodies.append(body)
            extra = b"Connection: close\r\n" if close_after_each else b""
            writer.write(RESPONSE % (len(body), extra, body))
            await writer.drain()
            if close_after_each or silent_hangup:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, bodies, connections


@pytest.mark.parametrize("close_after_each", [False, True])
async def test_posts_arrive_once_each_whether_the_server_keeps_the_connection(
        close_after_each: bool) -> None:
    server, bodies, connections = await serve(close_after_each)
    port = server.sockets[0].getsockname()[1]
    client = NovaClient(f"http://127.0.0.1:{port}/v2.1/os-server-external-events")
    try:
        for i in range(3):
            status, body = await client.post_json({"events": [{"tag": str(i)}]})
            assert status == 200
            assert orjson.loads(body) == {"events": [{"tag": str(i)}]}
    finally:
        await client.close()
        server.close()
    assert [orjson.loads(b)["events"][0]["tag"] for b in bodies] == ["0", "1", "2"]
    assert len(connections) == (3 if close_after_each else 1)


async def test_a_connection_closed_while_idle_is_replaced_without_losing_a_post() -> None:
    server, bodies, connections = await serve(False, silent_hangup=True)
    port = server.sockets[0].getsockname()[1]
    client = NovaClient(f"http://127.0.0.1:{port}/x")
    try:
        for n in range(3):
            assert (await client.post_json({"n": n}))[0] == 200
            await asyncio.sleep(0.05)  # the server hangs up meanwhile
    finally:
        await client.close()
        server.close()
    assert [orjson.loads(b) for b in bodies] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert len(connections) == 3


async def test_no_server_is_a_clear_error() -> None:
    client = NovaClient("http://127.0.0.1:9/v2.1/os-server-external-events", timeout=2)
    with pytest.raises(NovaUnreachable, match=r"Connection refused|ConnectionRefused"):
        await client.post_json({"events": []})


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="only http://"):
        NovaClient("https://nova/v2.1")
