"""The firewall rules installed on br-int, kept in step with ports and members.

State: per port, the rules last written under each of its keys; host-wide, the
member addresses of every remote group (the latest of a port's details and
`sg_members_changed`, both casts of the server in order). Keys, all "kept:"
(`vifwire.ovs.flows`: a restarted agent keeps the old rules until it replaces
them by key):

    kept:fw                    the pipeline's own rules (`firewall.BASE_FLOWS`)
    kept:fw:<port>             the port's rules but member flows
    kept:fw:<port>:<group>     the member flows of one remote group of the port

`ensure` plans a port's keys (pure, `vifwire.agent.firewall`) and writes only
the keys whose rules changed, so a member change rewrites member flows and
nothing else. Callers are the per-port workers (one at a time per port);
writes of concurrent ports coalesce into one bundle: whatever is asked while
a bundle is in flight goes into the next, and a failed bundle is retried per
caller so one port whose device vanished cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence

from vifwire.agent.firewall import (
    BASE_FLOWS,
    FwPort,
    firewall_reg,
    member_flows,
    port_flows,
    remote_groups,
)
from vifwire.agent.tasks import cancel_and_wait, spawn
from vifwire.messages import PortDetails, PortFirewall
from vifwire.ovs.flows import KEPT, FlowTable
from vifwire.ovs.runtime import OvsError

log = logging.getLogger(__name__)

BASE_KEY = f"{KEPT}fw"
Changes = dict[str, list[str]]


def port_key(port_id: str) -> str:
    return f"{BASE_KEY}:{port_id}"


def members_key(port_id: str, group: str) -> str:
    return f"{BASE_KEY}:{port_id}:{group}"


class Firewalls:
    def __init__(self, flows: FlowTable) -> None:
        self._flows = flows
        self.members: dict[str, dict[str, list[str]]] = {}
        self._firewalls: dict[str, PortFirewall] = {}  # port -> firewall installed
        self._written: dict[str, list[str]] = {}  # key -> rules written
        self._keys: dict[str, set[str]] = {}  # port -> its keys written
        self._regs: dict[str, int] = {}  # port -> reg5
        self._owners: dict[int, str] = {}  # reg5 -> port
        self._pending: list[tuple[Changes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.bundles = 0  # bundles written (for benches)

    # -- state -------------------------------------------------------------

    def learn(self, fw: PortFirewall | None) -> None:
        """Take the member lists a port's details carry."""
        if fw is not None:
            for group, members in fw["remote_members"].items():
                self.members[group] = members

    def set_members(self, group: str, members: Mapping[str, Sequence[str]]) -> list[str]:
        """The whole new member list of `group`; returns the ports whose rules use it."""
        self.members[group] = {eth: list(addrs) for eth, addrs in members.items()}
        return [port_id for port_id, fw in self._firewalls.items()
                if group in remote_groups(fw)]

    def installed(self, port_id: str) -> bool:
        return port_id in self._keys

    def written(self, key: str) -> list[str] | None:
        return self._written.get(key)

    def flow_count(self, port_id: str) -> int:
        return sum(len(self._written.get(k, ())) for k in self._keys.get(port_id, ()))

    # -- writes --------------------------------------------------------------

    async def ensure(self, port_id: str, details: PortDetails, ofport: str, vlan: int) -> None:
        """Install the port's firewall (from `details["firewall"]`) for its VIF
        `ofport` on local VLAN `vlan`; raises OvsError."""
        fw = details["firewall"]  # its members were learnt when the details came
        p = FwPort(port_id, ofport, self._reg(port_id), vlan, details["mac_address"],
                   tuple(ip["ip_address"] for ip in details["fixed_ips"]), fw)
        wanted: Changes = {BASE_KEY: list(BASE_FLOWS), port_key(port_id): port_flows(p)}
        for group in remote_groups(fw):
            members = self.members.get(group) or fw["remote_members"].get(group, {})
            wanted[members_key(port_id, group)] = member_flows(p, group, members)
        changes = {k: v for k, v in wanted.items() if self._written.get(k) != v}
        for key in self._keys.get(port_id, set()) - wanted.keys():
            changes[key] = []
        if changes:
            await self._write(changes)
        self._firewalls[port_id] = fw
        self._keys[port_id] = set(wanted) - {BASE_KEY}

    async def remove(self, port_id: str) -> None:
        keys = self._keys.get(port_id)
        if keys is None:
            return
        await self._write({key: [] for key in keys})
        del self._keys[port_id]
        self._firewalls.pop(port_id, None)
        reg = self._regs.pop(port_id, None)
        if reg is not None:
            self._owners.pop(reg, None)

    async def stop(self, timeout: float = 5.0) -> None:
        """Let the bundle in flight finish (a cancelled ovs-ofctl would outlive
        us), then stop."""
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._writer), timeout)
            await cancel_and_wait(self._writer)
            self._writer = None
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()

    def _reg(self, port_id: str) -> int:
        reg = self._regs.get(port_id)
        salt = 0
        while reg is None:
            candidate = firewall_reg(port_id, salt)
            if candidate not in self._owners:
                reg = self._regs[port_id] = candidate
                self._owners[candidate] = port_id
            salt += 1
        return reg

    async def _write(self, changes: Changes) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((changes, future))
        if self._writer is None or self._writer.done():
            self._writer = spawn(self._drain(), name="agent:firewall-writer")
        await future
        for key, rules in changes.items():
            if rules:
                self._written[key] = rules
            else:
                self._written.pop(key, None)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            error = await self._attempt({k: v for changes, _ in batch
                                         for k, v in changes.items()})
            for changes, future in batch:
                # A failed bundle again per caller: one vanished device fails alone.
                mine = error if error is None or len(batch) == 1 \
                    else await self._attempt(changes)
                if future.done():
                    continue
                if mine is None:
                    future.set_result(None)
                else:
                    future.set_exception(mine)

    async def _attempt(self, changes: Changes) -> OvsError | None:
        self.bundles += 1
        try:
            await self._flows.put_many(changes)
        except OvsError as exc:
            return exc
        return None
