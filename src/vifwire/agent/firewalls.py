"""The firewall rules installed on br-int, kept in step with ports and members.

State: per port, the rules last written under each of its keys; host-wide, the
member addresses of every remote group (the latest of a port's details and
`sg_members_changed`, both casts of the server in order). Keys, all "kept:"
(`vifwire.ovs.flows`: a restarted agent keeps the old rules until it replaces
them by key):

    kept:fw                    the pipeline's own rules (`firewall.BASE_FLOWS`)
    kept:fw:<port>             the port's rules
    kept:fw:rg:<group>         a remote group's member flows and conjunctions,
                               shared by every port whose rules name the group

`ensure` plans a port's rules (pure, `vifwire.agent.firewall`) and writes, in
one bundle, its key and the keys of the remote groups whose conjunctions it
changed, each only if its rules changed. A member change changes its group's
key and nothing else (`members_changed`, retried until it is written), by
difference: `FlowTable.put_many(in_place=...)` adds the new members' flows
and deletes the gone ones', leaving the others in place.
The members of a group are held while a port here uses it (a bind's push
carries none: the agent reads a group it does not hold before it wires the
port, `OvsAgent`), and forgotten with its last user, whose host gets no more
casts for it.
Conjunction ids are hashes of their shape, so ports sharing a rule share its
conjunction. Callers of `ensure` are the per-port workers (one at a time per port);
writes of concurrent ports coalesce into one bundle: whatever is asked while
a bundle is in flight goes into the next, and a failed bundle is retried per
caller so one port whose device vanished cannot fail the others.

After a restart, what a previous agent left under the "kept:" cookies is read
once (`read`, `vifwire.ovs.flow_snapshot`) and taken by `adopt`. A key this
agent has not written
yet but found there is compared before it is written: whatever equals the rules
wanted is kept as installed (no bundle, nothing for vswitchd to revalidate) and
only the keys that differ are written. The comparisons of concurrent ports
coalesce into one `ovs-ofctl diff-flows`, as writes do into one bundle. The old
rules stay in place meanwhile, so a port is filtered throughout. What was read
is forgotten once the flow table restored (vswitchd restarted, a flush) or the
sweep ran: from then on every key is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from vifwire.agent.firewall import (
    BASE_FLOWS,
    FwPort,
    Signature,
    conjunction_id,
    firewall_reg,
    group_flows,
    port_flows,
    signatures,
)
from vifwire.agent.tasks import spawn
from vifwire.aio import cancel_and_wait
from vifwire.messages import PortDetails, PortFirewall, remote_groups
from vifwire.ovs.flow_snapshot import FlowSnapshots, Snapshot
from vifwire.ovs.flows import KEPT, KEPT_PREFIX, FlowTable, group_cookie
from vifwire.ovs.runtime import OvsError

log = logging.getLogger(__name__)

BASE_KEY = f"{KEPT}fw"
Changes = dict[str, list[str]]


def port_key(port_id: str) -> str:
    return f"{BASE_KEY}:{port_id}"


GROUP_KEYS = f"{BASE_KEY}:rg:"


def group_key(group: str) -> str:
    return f"{GROUP_KEYS}{group}"


class Firewalls:
    def __init__(self, flows: FlowTable, snapshots: FlowSnapshots,
                 trunks: tuple[str, ...] = ()) -> None:
        self._flows = flows
        self._snapshots = snapshots
        self._trunks = trunks  # ports VLAN-tagged traffic arrives on
        self.members: dict[str, dict[str, list[str]]] = {}
        self._firewalls: dict[str, PortFirewall] = {}  # port -> firewall installed
        self._written: dict[str, list[str]] = {}  # key -> rules written
        self._keys: dict[str, set[str]] = {}  # port -> its keys written
        self._regs: dict[str, int] = {}  # port -> reg5
        self._owners: dict[int, str] = {}  # reg5 -> port
        self._conj: dict[Signature, int] = {}  # conjunctions in use -> id
        self._conj_ids: dict[int, Signature] = {}
        self._users: dict[Signature, set[str]] = {}  # conjunction -> ports
        self._sigs: dict[str, list[Signature]] = {}  # port -> its conjunctions
        # group -> (members, conjunctions, the flows made of them)
        self._made: dict[str, tuple[dict[str, list[str]], dict[Signature, int], list[str]]] = {}
        self._rewrites: set[asyncio.Task[None]] = set()
        # Ports a previous agent may have left rules for (`suspect`): removed
        # unless wanted, as if installed.
        self._suspects: set[str] = set()
        self._left: set[int] = set()  # cookies found at start, until settled
        # What `adopt` found, until each key was compared or written.
        self._found = Snapshot()
        self._found_at: int | None = None  # FlowTable.restores when it was read
        self._adopted: set[str] = set()  # keys kept as found since the last restore
        self.keep_found = True  # off: rewrite what was found (benches' A/B)
        self._pending: list[tuple[Changes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._checks: list[tuple[Changes, asyncio.Future[set[str]]]] = []
        self._checker: asyncio.Task[None] | None = None
        self.bundles = 0  # bundles written (for benches)
        self.kept = 0  # keys found in place and kept (for benches)

    # -- state -------------------------------------------------------------

    def learn(self, fw: PortFirewall | None, *, replace: bool = False) -> None:
        """Take the member lists a port's details carry: those of groups not known
        yet, or all of them (`replace`: a full sync's, read at once). A cast's
        lists may be older than what the agent read meanwhile (several server
        workers), so known groups change by `members_changed` only."""
        if fw is not None:
            for group, members in fw.get("remote_members", {}).items():
                if replace or group not in self.members:
                    self.members[group] = members

    def unknown_groups(self, fw: PortFirewall) -> list[str]:
        """The remote groups of `fw` whose members this agent does not hold: a
        bind's push carries none (`vifwire.server.firewalls`), so the port waits
        for a read of them."""
        return [g for g in remote_groups(fw) if g not in self.members]

    def members_changed(self, group: str, members: Mapping[str, Sequence[str]], *,
                        wanted: bool = False) -> None:
        """The whole new member list of `group`: rewrite its flows (in the background,
        until written) if a port here uses it. The list of a group no port here
        uses is not kept unless `wanted` (a port waits for it): no more casts
        would keep it current."""
        used = any(sig.group == group for sig in self._conj)
        if not used and not wanted:
            self.members.pop(group, None)
            return
        self.members[group] = {eth: list(addrs) for eth, addrs in members.items()}
        if used:
            task = spawn(self._rewrite(group), name=f"agent:firewall-group:{group}")
            self._rewrites.add(task)
            task.add_done_callback(self._rewrites.discard)

    async def read(self) -> Snapshot:
        """What is installed under the firewall's cookies (for `adopt`)."""
        return await self._snapshots.read(KEPT_PREFIX)

    def adopt(self, port_ids: Iterable[str], found: Snapshot, restores: int) -> None:
        """At start, before any write: take the rules a previous agent left, `found`
        (`read`), valid while the flow table's `restores` count is `restores`.
        Those of `port_ids` (VIFs on the bridge) count as installed until each
        port's worker kept, rewrote or removed them; once none is left, whatever
        else is left (ports gone meanwhile, groups no longer used) is swept."""
        self._found, self._found_at = found, restores
        present = found.flows
        self._suspects = {p for p in port_ids if group_cookie(port_key(p)) in present}
        self._left = set(present)
        self._settled()

    def _settled(self) -> None:
        if self._left and not self._suspects:
            held = {group_cookie(key) for key in self._flows.group_keys()}
            left, self._left = self._left - held, set()
            if not left:  # everything found was kept or replaced: no dump to sweep
                return
            task = spawn(self._swept(), name="agent:firewall-sweep")
            self._rewrites.add(task)
            task.add_done_callback(self._rewrites.discard)

    async def _swept(self) -> None:
        self._found_at = None  # the sweep deletes what no key holds yet: found or not
        try:
            gone = await self._flows.sweep()
        except OvsError as exc:
            log.warning("sweeping old firewall rules: %s", exc)
            return
        if gone:
            log.info("swept the rules of %d groups a previous agent left", gone)

    def installed(self, port_id: str) -> bool:
        """Rules of ours, or maybe of a previous agent's, are there for the port."""
        return port_id in self._keys or port_id in self._suspects

    def enforced(self, port_id: str) -> bool:
        """We wrote the port's rules."""
        return port_id in self._keys

    def written(self, key: str) -> list[str] | None:
        return self._written.get(key)

    def flow_count(self, port_id: str) -> int:
        return sum(len(self._written.get(k, ())) for k in self._keys.get(port_id, ()))

    # -- writes --------------------------------------------------------------

    async def ensure(self, port_id: str, details: PortDetails, ofport: str, vlan: int) -> None:
        """Install the port's firewall (from `details["firewall"]`) for its VIF
        `ofport` on local VLAN `vlan`; raises OvsError."""
        fw = details["firewall"]  # its groups' members are held (`unknown_groups`)
        p = FwPort(port_id, ofport, self._reg(port_id), vlan, details["mac_address"],
                   tuple(ip["ip_address"] for ip in details["fixed_ips"]), fw, self._trunks)
        touched = self._use(port_id, signatures(fw)) | set(remote_groups(fw))
        wanted: Changes = {BASE_KEY: list(BASE_FLOWS), port_key(port_id): port_flows(p, self._conj)}
        wanted.update((group_key(g), self._group_flows(g)) for g in touched)
        changes = {k: v for k, v in wanted.items() if self._written.get(k) != v}
        if changes and self._found.flows and self.keep_found:
            changes = await self._unless_found(changes, p)
        if changes:
            await self._write(changes)
        self._forget_unused(touched)
        self._firewalls[port_id] = fw
        self._keys[port_id] = {port_key(port_id)}
        if port_id in self._suspects:
            self._suspects.discard(port_id)
            self._settled()

    async def remove(self, port_id: str) -> None:
        keys = self._keys.get(port_id, {port_key(port_id)} if port_id in self._suspects else None)
        if keys is None:
            return
        changes: Changes = {key: [] for key in keys}
        touched = self._use(port_id, [])
        changes.update((group_key(g), self._group_flows(g)) for g in touched)
        await self._write(changes)
        self._forget_unused(touched)
        self._keys.pop(port_id, None)
        if port_id in self._suspects:
            self._suspects.discard(port_id)
            self._settled()
        self._firewalls.pop(port_id, None)
        reg = self._regs.pop(port_id, None)
        if reg is not None:
            self._owners.pop(reg, None)

    # -- rules a previous agent left ----------------------------------------

    async def _unless_found(self, changes: Changes, p: FwPort) -> Changes:
        """`changes` but the keys whose rules were found in place (kept as written)."""
        if self._stale():
            return changes
        numbered: Changes = {}  # the found keys' rules, with port numbers for names
        for key, rules in changes.items():
            if group_cookie(key) not in self._found.flows:
                continue
            if key != port_key(p.port_id):
                numbered[key] = rules
            elif (mine := self._numbered(p)) is not None:
                numbered[key] = port_flows(mine, self._conj)
        if not numbered:
            return changes
        future: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        self._checks.append((numbered, future))
        if self._checker is None or self._checker.done():
            self._checker = spawn(self._check(), name="agent:firewall-check")
        same = await future
        for key in same:
            self._kept(key, changes[key])
        return {k: v for k, v in changes.items() if k not in same}

    def _stale(self) -> bool:
        """Whether what `adopt` read may no longer be what vswitchd holds: after a
        restore (vswitchd restarted or its table was flushed) or the sweep; forgets
        it then."""
        if self._found_at is not None and self._flows.restores == self._found_at:
            return False
        self._found = Snapshot()
        return True

    def _numbered(self, p: FwPort) -> FwPort | None:
        """`p` with port numbers from the snapshot instead of names (None: a port
        the snapshot does not know)."""
        numbers = self._found.ports
        ports = [name if name.isdigit() else numbers.get(name) for name in (p.ofport, *p.trunks)]
        if None in ports:
            return None
        return replace(p, ofport=str(ports[0]), trunks=tuple(str(n) for n in ports[1:]))

    def _kept(self, key: str, rules: list[str]) -> None:
        if self._written.get(key) != rules:
            self._written[key] = rules
            self._flows.stage(key, rules)  # restore() and sweep() know it as ours
            self._adopted.add(key)
            self.kept += 1

    def restored(self) -> None:
        """The flow table made every rule right (its `on_restored`). A restore whose
        bundle was made before a key was kept (vswitchd restarted while it was
        compared) did not write it, and the new vswitchd has none of it: the keys
        kept since the last restore are written again (once; later restores
        write them with the rest)."""
        keys, self._adopted = self._adopted, set()  # none at the start's ensure()
        changes = {key: self._written[key] for key in keys if key in self._written}
        if changes:
            task = spawn(self._write_again(changes), name="agent:firewall-kept")
            self._rewrites.add(task)
            task.add_done_callback(self._rewrites.discard)

    async def _write_again(self, changes: Changes) -> None:
        try:
            await self._write(changes)
        except OvsError as exc:  # vswitchd went away again: its restore writes them
            log.warning("rewriting %d kept rule groups: %s", len(changes), exc)

    async def _check(self) -> None:
        """Compare what callers asked about meanwhile, in one diff-flows each round."""
        while self._checks:
            batch, self._checks = self._checks, []
            asked = {k: v for numbered, _ in batch for k, v in numbered.items()}
            cookies = {group_cookie(key): key for key in asked}
            found = [line for c in cookies for line in self._found.flows.pop(c, ())]
            wanted = [f"cookie={c:#x},{spec}" for c, key in cookies.items() for spec in asked[key]]
            differ: set[int] | None = None
            try:
                differ = await self._snapshots.differing(found, wanted)
            finally:  # whatever happens, the callers hear (nothing kept: all written)
                if self._stale():
                    differ = None
                same = set() if differ is None else \
                    {k for c, k in cookies.items() if c not in differ}
                for numbered, future in batch:
                    if not future.done():  # a shared key asked with other rules: not compared
                        future.set_result({k for k in numbered if k in same
                                           and numbered[k] == asked[k]})

    def _forget_unused(self, groups: set[str]) -> None:
        """A group no port here uses gets no more member casts: its list would go
        stale, so it is read again when a port needs it."""
        used = {sig.group for sig in self._conj}
        for group in groups - used:
            self.members.pop(group, None)

    def _use(self, port_id: str, sigs: list[Signature]) -> set[str]:
        """Record the port's conjunctions; returns the groups whose set changed."""
        old = set(self._sigs.get(port_id, ()))
        touched = set()
        for sig in old - set(sigs):
            users = self._users[sig]
            users.discard(port_id)
            if not users:
                del self._users[sig]
                self._conj_ids.pop(self._conj.pop(sig))
                touched.add(sig.group)
        for sig in set(sigs) - old:
            if sig not in self._users:
                self._users[sig] = set()
                salt = 0
                while (conj := conjunction_id(sig, salt)) in self._conj_ids:
                    salt += 1
                self._conj[sig], self._conj_ids[conj] = conj, sig
                touched.add(sig.group)
            self._users[sig].add(port_id)
        if sigs:
            self._sigs[port_id] = sigs
        else:
            self._sigs.pop(port_id, None)
        return touched

    def _group_flows(self, group: str) -> list[str]:
        conj = {sig: n for sig, n in self._conj.items() if sig.group == group}
        members = self.members.get(group, {})
        made = self._made.get(group)
        # Every port of a group asks at start: build its (member-sized) flows once.
        if made is not None and made[0] == members and made[1] == conj:
            return made[2]
        flows = group_flows(group, members, conj) if conj else []
        self._made[group] = (members, conj, flows)
        return flows

    async def _rewrite(self, group: str) -> None:
        delay = 0.05
        while True:
            flows = self._group_flows(group)
            if self._written.get(group_key(group), []) == flows:
                return
            try:
                await self._write({group_key(group): flows})
                return
            except OvsError as exc:
                log.warning("members of %s: %s (retrying)", group, exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 5.0)

    async def stop(self, timeout: float = 5.0) -> None:
        """Let the bundle in flight finish (a cancelled ovs-ofctl would outlive
        us), then stop."""
        await cancel_and_wait(*self._rewrites)
        if self._checker is not None:
            await cancel_and_wait(self._checker)
            self._checker = None
        for _, check in self._checks:
            check.cancel()
        self._checks.clear()
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
        for key in changes:  # what was found of it is no longer what vswitchd holds
            self._found.flows.pop(group_cookie(key), None)
            self._left.discard(group_cookie(key))  # nor left to sweep
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
            # A group's member flows change by difference: a new member adds its
            # flows and leaves the others' in place.
            await self._flows.put_many(changes, in_place=[k for k in changes
                                                         if k.startswith(GROUP_KEYS)])
        except OvsError as exc:
            return exc
        return None
