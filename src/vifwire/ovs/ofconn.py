"""One kept OpenFlow 1.4 connection to a bridge, for atomic bundles of rules.

`OpenFlowConnection.bundle(lines)` sends ovs-ofctl-syntax lines (encoded by
`vifwire.ovs.openflow`) as one atomic bundle, as ovs-ofctl --bundle does but
in two round trips: open, every flow mod and a barrier in one write (the
switch refuses a bad flow mod alone and answers the barrier after it), then
commit, or discard if anything was refused. Port names are resolved with a
port description request in the same exchange, so a name always means the
port the switch has now (as with ovs-ofctl, which asks each time too).

It connects on first use to `<run dir>/<bridge>.mgmt` (a unix socket, so a
switch in another network namespace is reached the same way) and reconnects
after a loss; a bundle whose connection died is sent once more on a new one
(bundles replace rules by cookie, so sending one twice is harmless; an
unfinished bundle dies with its connection). A reader task answers the
switch's echo requests, so an idle connection stays up. All asyncio: no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from collections.abc import Sequence
from pathlib import Path

from vifwire.aio import cancel_and_wait
from vifwire.ovs import openflow as of
from vifwire.ovs.model import OvsWriteFailed

_HEADER = struct.Struct("!BBHI")


class OpenFlowConnection:
    # ovs-ofctl waits as long as vswitchd takes; under a 1,000-VM storm on two
    # cores four vswitchds took over 10 s for one bundle.
    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self._path = socket_path
        self._timeout = timeout
        self._xids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[tuple[int, int, bytes] | None] = asyncio.Queue()
        self.bundles = 0  # bundles committed (for benches and tests)

    async def bundle(self, lines: Sequence[str]) -> None:
        """Apply `lines` atomically; raises OvsWriteFailed (nothing applied) or
        openflow.Unsupported (before anything is sent)."""
        async with self._lock:
            for attempt in (1, 2):
                try:
                    await asyncio.wait_for(self._bundle(lines), self._timeout)
                    self.bundles += 1
                    return
                except (ConnectionError, asyncio.IncompleteReadError, _Lost) as exc:
                    await self._drop()
                    if attempt == 2:
                        raise OvsWriteFailed(f"OpenFlow connection to {self._path}: "
                                             f"{exc or type(exc).__name__}") from exc
                except TimeoutError as exc:
                    await self._drop()
                    raise OvsWriteFailed(f"no answer from {self._path} in "
                                         f"{self._timeout:.0f}s") from exc
                except OSError as exc:  # no socket: vswitchd is not running
                    await self._drop()
                    raise OvsWriteFailed(f"OpenFlow connection to {self._path}: "
                                         f"{exc}") from exc

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    def _xid(self) -> int:
        return next(self._xids) & 0xFFFFFFFF  # 32 bits on the wire

    # -- one exchange --------------------------------------------------------

    async def _bundle(self, lines: Sequence[str]) -> None:
        if self._writer is None:
            await self._connect()
        names = await self._ports() if any(of.NAMED_PORT.search(line) for line in lines) else {}

        def port_of(name: str) -> int:
            if name not in names:
                raise of.UnknownPort(name)
            return names[name]

        bundle_id = self._xid()
        open_xid = self._xid()
        messages, by_xid = [of.bundle_control(open_xid, bundle_id, of.BUNDLE_OPEN)], {}
        for line in lines:
            xid = self._xid()
            try:
                mod = of.flow_mod(line, xid, port_of)
            except of.UnknownPort as exc:
                raise OvsWriteFailed(f"{line}: no port named {exc} on the bridge") from exc
            messages.append(of.bundle_add(xid, bundle_id, mod))
            by_xid[xid] = line
        # A flow mod the switch refuses is refused alone (the bundle stays open):
        # the barrier's answer comes after every refusal, then commit or discard.
        barrier_xid = self._xid()
        messages.append(of.header(of.OFPT_BARRIER_REQUEST, b"", barrier_xid))
        await self._send(b"".join(messages))
        errors = []
        while True:
            kind, xid, body = await self._next()
            if kind == of.OFPT_ERROR and (xid in by_xid or xid == open_xid):
                errors.append(f"{of.error_text(body)} for: {by_xid.get(xid, 'bundle open')}")
            elif xid == barrier_xid and kind == of.OFPT_BARRIER_REPLY:
                break
        end_xid = self._xid()
        await self._send(of.bundle_control(end_xid, bundle_id,
                                           of.BUNDLE_DISCARD if errors else of.BUNDLE_COMMIT))
        while True:
            kind, xid, body = await self._next()
            if xid != end_xid:
                continue
            if errors:
                raise OvsWriteFailed(f"bundle not applied: {'; '.join(errors)}")
            if kind == of.OFPT_ERROR:
                raise OvsWriteFailed(f"bundle not applied: {of.error_text(body)}")
            return

    async def _ports(self) -> dict[str, int]:
        xid = self._xid()
        await self._send(of.port_desc_request(xid))
        names: dict[str, int] = {}
        while True:
            kind, got, body = await self._next()
            if got != xid:
                continue
            if kind != of.OFPT_MULTIPART_REPLY:
                raise OvsWriteFailed(f"port description: {of.error_text(body)}")
            part, more = of.port_desc_reply(body)
            names.update(part)
            if not more:
                return names

    # -- the connection --------------------------------------------------------

    async def _connect(self) -> None:
        reader, writer = await asyncio.open_unix_connection(str(self._path))
        writer.write(of.hello(self._xid()))
        version, kind, _, _, _ = await _read(reader)
        if kind != of.OFPT_HELLO or version < of.VERSION:
            writer.close()
            raise OvsWriteFailed(f"{self._path} does not speak OpenFlow 1.4")
        self._writer = writer
        self._inbox = asyncio.Queue()
        self._reader_task = asyncio.get_running_loop().create_task(
            self._read_loop(reader, writer, self._inbox), name=f"ovs:openflow:{self._path.name}")

    @staticmethod
    async def _read_loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         inbox: asyncio.Queue[tuple[int, int, bytes] | None]) -> None:
        try:
            while True:
                _, kind, _, xid, body = await _read(reader)
                if kind == of.OFPT_ECHO_REQUEST:
                    writer.write(of.header(of.OFPT_ECHO_REPLY, body, xid))
                else:
                    inbox.put_nowait((kind, xid, body))
        except (ConnectionError, asyncio.IncompleteReadError):
            inbox.put_nowait(None)  # whoever waits learns the connection is gone

    async def _send(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise _Lost("not connected")
        self._writer.write(data)
        await self._writer.drain()

    async def _next(self) -> tuple[int, int, bytes]:
        item = await self._inbox.get()
        if item is None:
            raise _Lost("the switch closed the connection")
        return item

    async def _drop(self) -> None:
        if self._reader_task is not None:
            await cancel_and_wait(self._reader_task)
            self._reader_task = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
            self._writer = None


class _Lost(Exception):
    """The connection went away mid-exchange."""


async def _read(reader: asyncio.StreamReader) -> tuple[int, int, int, int, bytes]:
    head = await reader.readexactly(8)
    version, kind, length, xid = _HEADER.unpack(head)
    body = await reader.readexactly(length - 8) if length > 8 else b""
    return version, kind, length, xid, body
