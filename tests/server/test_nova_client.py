"""The notifier's HTTP client against real sockets, over http and https (a local TLS
server with a self-signed certificate made here): keep-alive, a server that hangs up
between posts, no server at all, certificates that must be refused, bad URLs."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vifwire.server.nova_client import (
    NOVA_CLIENTS,
    NovaClient,
    NovaUnreachable,
    NovaUrlError,
    make_client,
    parse_url,
)

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Trusts this certificate only, as a deployment with a private CA would."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_cert(directory: Path, dns: list[str], ips: list[str]) -> Cert:
    """A self-signed server certificate for these names (its own trust anchor)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vifwire test nova")])
    now = datetime.now(UTC)
    alt = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = Cert(directory / "cert.pem", directory / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    return make_cert(tmp_path_factory.mktemp("tls"), ["localhost"], ["127.0.0.1"])


async def read_post(reader: asyncio.StreamReader) -> bytes | None:
    """The body of the next request on a connection; None once the client is gone."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        return None
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    return await reader.readexactly(length)


# The echo servers' connection handlers: a test ends once they saw the client go.
_HANDLERS: set[asyncio.Task[None]] = set()


async def serve(close_after_each: bool, *, silent_hangup: bool = False,
                tls: ssl.SSLContext | None = None
                ) -> tuple[asyncio.Server, list[bytes], list[int]]:
    """A tiny HTTP(S) server that echoes the JSON body back and counts connections.

    close_after_each: answer with "Connection: close" and hang up;
    silent_hangup: answer as keep-alive, then hang up anyway (an idle timeout).
    """
    bodies: list[bytes] = []
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        _HANDLERS.add(asyncio.current_task())  # type: ignore[arg-type]
        while (body := await read_post(reader)) is not None:
            bodies.append(body)
            extra = b"Connection: close\r\n" if close_after_each else b""
            writer.write(RESPONSE % (len(body), extra, body))
            await writer.drain()
            if close_after_each or silent_hangup:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    return server, bodies, connections


@pytest.fixture(params=sorted(NOVA_CLIENTS))
def kind(request: pytest.FixtureRequest) -> str:
    """Both clients: ours on httptools and the plain httpx one (Settings.nova_client)."""
    return str(request.param)


def _why(kind: str, message: str) -> str | None:
    """The error text to expect: ours says what happened, httpx names its exception."""
    return message if kind == "httptools" else None


async def _stop(server: asyncio.Server, client: Any) -> None:
    await client.close()
    pending = {t for t in _HANDLERS if not t.done()}
    _HANDLERS.clear()
    if pending:  # httpx's close does not wait for the server to see it
        await asyncio.wait(pending, timeout=5)
    server.close()
    await server.wait_closed()


def _base(server: asyncio.Server, scheme: str) -> str:
    return f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("close_after_each", [False, True])
async def test_posts_arrive_once_each_whether_the_server_keeps_the_connection(
        close_after_each: bool, scheme: str, cert: Cert, kind: str) -> None:
    tls = cert.server_context() if scheme == "https" else None
    server, bodies, connections = await serve(close_after_each, tls=tls)
    client = make_client(kind, f"{_base(server, scheme)}/v2.1/os-server-external-events",
                        ssl_context=cert.client_context())
    try:
        for i in range(3):
            status, body = await client.post_json({"events": [{"tag": str(i)}]})
            assert status == 200
            assert orjson.loads(body) == {"events": [{"tag": str(i)}]}
    finally:
        await _stop(server, client)
    assert [orjson.loads(b)["events"][0]["tag"] for b in bodies] == ["0", "1", "2"]
    assert len(connections) == (3 if close_after_each else 1)


async def _idle_hangup_is_survived(scheme: str, cert: Cert) -> None:
    tls = cert.server_context() if scheme == "https" else None
    server, bodies, connections = await serve(False, silent_hangup=True, tls=tls)
    client = NovaClient(f"{_base(server, scheme)}/x", ssl_context=cert.client_context())
    try:
        for n in range(3):
            assert (await client.post_json({"n": n}))[0] == 200
            await asyncio.sleep(0.05)  # the server hangs up meanwhile
    finally:
        await _stop(server, client)
    assert [orjson.loads(b) for b in bodies] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert len(connections) == 3


async def _posts_leave_at_once(scheme: str, cert: Cert) -> None:
    tls = cert.server_context() if scheme == "https" else None
    server, _, _ = await serve(False, tls=tls)
    client = NovaClient(f"{_base(server, scheme)}/x", ssl_context=cert.client_context())
    try:
        assert (await client.post_json({}))[0] == 200
        assert client.transport is not None
        sock = client.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert (client.transport.get_extra_info("ssl_object") is not None) == (scheme == "https")
    finally:
        await _stop(server, client)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_connection_closed_while_idle_is_replaced_without_losing_a_post(
        scheme: str, cert: Cert) -> None:
    await _idle_hangup_is_survived(scheme, cert)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_the_connection_sends_small_posts_at_once(scheme: str, cert: Cert) -> None:
    """TCP_NODELAY, over TLS too: else each post waits ~40 ms on Nagle + delayed ACK."""
    await _posts_leave_at_once(scheme, cert)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_on_uvloop_as_the_stack_runs_it(scheme: str, cert: Cert) -> None:
    """The stack's loop is uvloop's: TLS, TCP_NODELAY and the reconnect after an idle
    hangup must hold there too (the other tests run on asyncio's own loop)."""

    async def scenario() -> None:
        await _posts_leave_at_once(scheme, cert)
        await _idle_hangup_is_survived(scheme, cert)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


async def test_https_checks_the_name_in_the_certificate(cert: Cert, kind: str) -> None:
    server, bodies, _ = await serve(False, tls=cert.server_context())
    port = server.sockets[0].getsockname()[1]
    client = make_client(kind, f"https://localhost:{port}/x", ssl_context=cert.client_context())
    try:
        assert (await client.post_json({"n": 1}))[0] == 200
    finally:
        await _stop(server, client)
    assert bodies == [b'{"n":1}']


async def _refused(server_cert: Cert, client_context: ssl.SSLContext | None) -> None:
    """The client refuses the server's certificate: nothing is posted."""
    server, bodies, _ = await serve(False, tls=server_cert.server_context())
    client = NovaClient(f"{_base(server, 'https')}/x", ssl_context=client_context, timeout=5)
    try:
        with pytest.raises(NovaUnreachable, match="certificate verify failed"):
            await client.post_json({"n": 1})
    finally:
        await _stop(server, client)
    assert bodies == []


async def test_https_refuses_a_certificate_for_another_name(tmp_path: Path) -> None:
    other = make_cert(tmp_path, ["nova.example"], [])
    await _refused(other, other.client_context())


async def test_https_refuses_a_certificate_the_system_cas_did_not_sign(cert: Cert) -> None:
    await _refused(cert, None)  # the default context: the system's CAs


async def test_no_server_is_a_clear_error(kind: str) -> None:
    client = make_client(kind, "http://127.0.0.1:9/v2.1/os-server-external-events", timeout=2)
    with pytest.raises(NovaUnreachable, match=r"Connection refused|ConnectionRefused|ConnectErr"):
        await client.post_json({"events": []})


def test_urls_are_parsed_with_default_ports() -> None:
    assert parse_url("https://nova.example/compute/v2.1/x").port == 443
    assert parse_url("http://nova.example/v2.1").port == 80
    target = parse_url("https://[::1]:8774/v2.1/x?a=1")
    assert (target.host, target.port, target.target, target.host_header, target.tls) == \
        ("::1", 8774, "/v2.1/x?a=1", "[::1]:8774", True)


@pytest.mark.parametrize(("url", "why"), [
    ("", "empty"), ("garbage", "http:// or https://"), ("ftp://nova/v2.1", "http:// or https://"),
    ("127.0.0.1:8774/v2.1", "http:// or https://"), ("https:///v2.1", "no host"),
    ("http://nova:abc/", "bad port"), ("http://nova:70000/", "bad port"),
    ("http://nova:0/", "bad port"), ("http://user:secret@nova/", "credentials"),
    ("http://no va/", "spaces"), ("http://[nova]:8774/", "malformed"),
    ("http://növa/", "ASCII"),
])
def test_unusable_urls_are_refused_up_front(url: str, why: str) -> None:
    with pytest.raises(NovaUrlError, match=why):
        NovaClient(url)


async def _raw_server(answers: list[tuple[bytes, bool]]) -> tuple[asyncio.Server, list[int]]:
    """Answers the requests, whatever connection they come on, with `answers` in
    order: (bytes, then hang up?). Counts connections."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        _HANDLERS.add(asyncio.current_task())  # type: ignore[arg-type]
        while answers and await read_post(reader) is not None:
            answer, hang_up = answers.pop(0)
            writer.write(answer)
            await writer.drain()
            if hang_up:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, connections


async def test_an_answer_ended_by_closing_the_connection_is_whole(kind: str) -> None:
    """HTTP/1.0 style: no Content-Length, the body ends when Nova hangs up."""
    unframed = b'HTTP/1.0 200 OK\r\n\r\n{"events": []}'
    server, connections = await _raw_server([(unframed, True), (unframed, True)])
    client = make_client(kind, f"{_base(server, 'http')}/x")
    try:
        assert await client.post_json({"n": 1}) == (200, b'{"events": []}')
        assert await client.post_json({"n": 2}) == (200, b'{"events": []}')
    finally:
        await _stop(server, client)
    assert len(connections) == 2


async def test_an_answer_that_is_not_http_is_an_error_and_the_next_post_reconnects(
        kind: str) -> None:
    server, connections = await _raw_server([(b"SSH-2.0-OpenSSH\r\n\r\n", False),
                                             (RESPONSE % (2, b"", b"{}"), False)])
    client = make_client(kind, f"{_base(server, 'http')}/x")
    try:
        with pytest.raises(NovaUnreachable, match=_why(kind, "not HTTP")):
            await client.post_json({"n": 1})
        assert await client.post_json({"n": 2}) == (200, b"{}")
    finally:
        await _stop(server, client)
    assert len(connections) == 2


async def test_a_connection_cut_mid_answer_is_an_error_not_a_repost(kind: str) -> None:
    server, connections = await _raw_server([(RESPONSE % (100, b"", b'{"events"'), True),
                                             (RESPONSE % (2, b"", b"{}"), False)])
    client = make_client(kind, f"{_base(server, 'http')}/x")
    try:
        with pytest.raises(NovaUnreachable, match=_why(kind, "mid-answer")):
            await client.post_json({"n": 1})
    finally:
        await _stop(server, client)
    assert len(connections) == 1  # not posted again: Nova may have acted on it


async def test_interim_answers_are_skipped_and_a_protocol_switch_is_an_error(kind: str) -> None:
    final = RESPONSE % (2, b"", b"{}")
    server, connections = await _raw_server([
        (b"HTTP/1.1 100 Continue\r\n\r\n" + final, False),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + final, False),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
         False)])
    client = make_client(kind, f"{_base(server, 'http')}/x")
    try:
        assert await client.post_json({"n": 1}) == (200, b"{}")
        assert await client.post_json({"n": 2}) == (200, b"{}")
        with pytest.raises(NovaUnreachable, match=_why(kind, "switched protocols")):
            await client.post_json({"n": 3})
    finally:
        await _stop(server, client)
    assert len(connections) == 1


async def test_an_abandoned_post_never_lends_its_answer_to_the_next(kind: str) -> None:
    """A post cancelled (or timed out) while Nova works on it: its late answer must not
    be read as the next post's."""
    answered: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _HANDLERS.add(asyncio.current_task())  # type: ignore[arg-type]
        while (body := await read_post(reader)) is not None:
            await asyncio.sleep(0.2 if not answered else 0)  # slow on the first post
            answered.append(body)
            writer.write(RESPONSE % (len(body), b"", body))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = make_client(kind, f"{_base(server, 'http')}/x")
    try:
        first = asyncio.create_task(client.post_json({"post": 1}))
        await asyncio.sleep(0.05)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await client.post_json({"post": 2}) == (200, b'{"post":2}')
    finally:
        await _stop(server, client)


async def test_a_post_carries_its_own_headers_next_to_the_token(kind: str) -> None:
    """The notifier's per-post X-Vifwire-Event-Revisions, on both clients."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _HANDLERS.add(asyncio.current_task())  # type: ignore[arg-type]
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            heads.append(head)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            body = await reader.readexactly(length)
            writer.write(RESPONSE % (len(body), b"", body))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = make_client(kind, f"{_base(server, 'http')}/x", token="t0k")
    try:
        assert (await client.post_json({"n": 1}, {"X-Vifwire-Event-Revisions": "7,8"}))[0] == 200
        assert (await client.post_json({"n": 2}))[0] == 200
    finally:
        await _stop(server, client)
    lines = [{line.split(b":")[0].lower(): line.split(b": ", 1)[1]
              for line in head.split(b"\r\n")[1:] if line} for head in heads]
    assert lines[0][b"x-vifwire-event-revisions"] == b"7,8"
    assert b"x-vifwire-event-revisions" not in lines[1]  # per post, not kept
    assert all(h[b"x-auth-token"] == b"t0k" for h in lines)
    assert [h[b"content-length"] for h in lines] == [b"7", b"7"]
