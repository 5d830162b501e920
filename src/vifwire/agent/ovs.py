"""The agent's narrow door to Open vSwitch, implemented on ovsdbapp.

The rest of the agent sees four verbs: `connect` (which also starts the VIF
stream into `on_changes`), `apply` (tag a port), `install_dead_vlan_drop` and
`close`. Every ovsdbapp call runs with `check_error=True`; row notifications
reach the loop only via `call_soon_threadsafe`. The tagging transactions, one
per burst of VIFs, are handed straight to ovsdbapp's connection thread and
their result comes back to the loop as a future (`_LoopResult`); the rarer
calls run in a worker thread (`asyncio.to_thread`).

ovsdbapp's connection thread commits one transaction at a time (its queue holds
one), so per-port writes that arrive while a commit is in flight are gathered
into the next transaction: one round trip for a burst of VIFs. A failed batch
falls back to one transaction per port so one vanished port cannot fail its
neighbours. Transactions are vsctl-like: they return once vswitchd applied the
change (cur_cfg caught up), so "wired" means the tag is live in the datapath.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ovsdbapp.backend.ovs_idl import idlutils

from vifwire.agent.errors import OvsUnavailable, OvsWriteFailed
from vifwire.agent.model import DEAD_VLAN, VifChanges
from vifwire.agent.monitor import MONITORED, VifIdl
from vifwire.agent.tasks import cancel_and_wait, spawn
from vifwire.ovs.idl import open_connection, open_vswitch_api
from vifwire.ovs.runtime import OvsError, OvsRuntime
from vifwire.settings import OvsSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortWrite:
    """Set Port.tag and merge/remove Port.other_config keys of the Port `name`."""

    name: str
    tag: int
    other_config: dict[str, str] = field(default_factory=dict)
    clear_keys: tuple[str, ...] = ()


_Pending = tuple[PortWrite, "asyncio.Future[None]"]


class OvsBridge:
    def __init__(self, settings: OvsSettings, on_changes: Callable[[VifChanges], None],
                 timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._on_changes = on_changes
        self._api: Any = None
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()

        def sink(changes: VifChanges) -> None:
            loop.call_soon_threadsafe(self._on_changes, changes)

        remote = self.settings.connection
        try:
            conn = await asyncio.to_thread(
                open_connection, remote, MONITORED, timeout=self.timeout, idl_class=VifIdl,
                bridge=self.settings.integration_bridge, sink=sink)
            self._api = await asyncio.to_thread(open_vswitch_api, conn)
        except OvsError as exc:
            raise OvsUnavailable(f"Open vSwitch at {remote}: {exc}") from exc
        await self._execute(self._api.add_br(self.settings.integration_bridge, may_exist=True,
                                             datapath_type=self.settings.datapath_type))
        self._writer = spawn(self._write_loop(), name="ovs:writer")

    async def close(self) -> None:
        if self._writer is not None:
            await cancel_and_wait(self._writer)
            self._writer = None
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._api is not None:
            conn = self._api.ovsdb_connection
            self._api = None
            await asyncio.to_thread(conn.stop, self.timeout)

    async def install_dead_vlan_drop(self) -> None:
        """Drop whatever carries the dead VLAN; the bridge's NORMAL flow stays."""
        runtime = OvsRuntime(self.settings)
        flow = f"priority=65535,dl_vlan={DEAD_VLAN},actions=drop"
        try:
            await asyncio.to_thread(runtime.ofctl, "add-flow",
                                    self.settings.integration_bridge, flow)
        except OvsError as exc:
            raise OvsUnavailable(f"cannot install the dead VLAN flow: {exc}") from exc

    async def drop_port(self, name: str, port_id: str) -> None:
        """Drop all traffic from the port: NORMAL still switches VLAN 4095 between
        access ports, so the dead VLAN alone does not isolate (Neutron does this too)."""
        flow = f"cookie={_cookie(port_id)},priority=2,in_port={name},actions=drop"
        await self._ofctl("add-flow", self.settings.integration_bridge, flow)

    async def undrop_port(self, port_id: str) -> None:
        """Remove the port's drop flow (by cookie: works after the port is gone)."""
        await self._ofctl("del-flows", self.settings.integration_bridge,
                          f"cookie={_cookie(port_id)}/-1")

    async def clear_drop_flows(self) -> None:
        """Forget drop flows of an earlier run; reconcile re-adds the ones still due."""
        await self._ofctl("del-flows", self.settings.integration_bridge,
                          f"cookie={_COOKIE_PREFIX}/{_COOKIE_MASK}")

    async def _ofctl(self, *args: str) -> None:
        try:
            await asyncio.to_thread(OvsRuntime(self.settings).ofctl, *args)
        except OvsError as exc:
            raise OvsWriteFailed(str(exc)) from exc

    async def apply(self, write: PortWrite) -> None:
        """Commit `write` (batched with concurrent ones); raises OvsWriteFailed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        self._wake.set()
        await future

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                batch = [(w, f) for w, f in batch if not f.done()]
                if not batch:
                    continue
                try:
                    await self._commit([w for w, _ in batch])
                except OvsWriteFailed as exc:
                    if len(batch) == 1:
                        _settle(batch[0][1], exc)
                        continue
                    for write, future in batch:
                        try:
                            await self._commit([write])
                        except OvsWriteFailed as one:
                            _settle(future, one)
                        else:
                            _settle(future, None)
                else:
                    for _, future in batch:
                        _settle(future, None)

    async def _commit(self, writes: list[PortWrite]) -> None:
        api = self._api
        if api is None:
            raise OvsWriteFailed("not connected to OVSDB")
        commands = []
        for w in writes:
            commands.append(api.db_set("Port", w.name, ("tag", w.tag),
                                       ("other_config", w.other_config), if_exists=False))
            if w.clear_keys:
                commands.append(api.db_remove("Port", w.name, "other_config", *w.clear_keys,
                                              if_exists=True))
        names = ", ".join(w.name for w in writes)
        try:
            await self._transact(api, commands)
        except Exception as exc:
            raise OvsWriteFailed(f"tagging {names} failed: {exc}") from exc

    async def _execute(self, command: Any) -> Any:
        try:
            return await asyncio.to_thread(command.execute, check_error=True)
        except Exception as exc:
            raise OvsUnavailable(f"OVSDB command failed: {exc}") from exc

    async def _transact(self, api: Any, commands: list[Any]) -> None:
        """Commit `commands` in one transaction of ovsdbapp's connection thread.

        ovsdbapp's own `commit()` blocks a thread on the transaction's result
        queue; this swaps that queue for a `_LoopResult`, so no worker thread
        sits between the loop and the connection thread (two thread hand-offs
        fewer per burst of VIFs). What commit() would raise, this raises.
        """
        loop = asyncio.get_running_loop()
        txn = api.create_transaction(check_error=True)
        for command in commands:
            txn.add(command)
        done: asyncio.Future[Any] = loop.create_future()
        txn.results = _LoopResult(loop, done)
        connection = api.ovsdb_connection
        try:
            connection.txns.put(txn, False)
        except queue.Full:  # another caller's transaction is queued: wait our turn
            await asyncio.to_thread(connection.queue_txn, txn)
        result = await asyncio.wait_for(done, txn.timeout)
        if isinstance(result, idlutils.ExceptionResult):
            raise result.ex


class _LoopResult:
    """Stands in for an ovsdbapp transaction's result queue: the connection
    thread's `put(result)` resolves an asyncio future on `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self._loop, self._future = loop, future

    def put(self, result: Any, *_args: Any, **_kwargs: Any) -> None:
        # A closed loop raises RuntimeError: nobody waits for this result any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_resolve, self._future, result)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


# Drop flows carry cookie 0x7677 (vw) in the top 16 bits and a hash of the port id.
_COOKIE_PREFIX, _COOKIE_MASK = "0x7677000000000000", "0xffff000000000000"


def _cookie(port_id: str) -> str:
    return "0x7677" + hashlib.blake2b(port_id.encode(), digest_size=6).hexdigest()


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
