"""The agent's OpenFlow rules on the integration bridge, kept installed.

`FlowTable` holds every rule the agent wants, grouped by key (the base rules,
one group per port; security groups can add theirs the same way), and is the
one writer of those rules. `put(key, flows)` replaces a group atomically (one
OpenFlow bundle: delete by the group's cookie, add), so a port is never less
isolated between two versions of its rules. `restore()` rewrites the whole set
from that state in one bundle. `ensure()` first asks vswitchd whether it holds
exactly the table's own rules already (one dump of the base and group cookies,
compared by `ovs-ofctl diff-flows`, which parses both sides the same way:
`vifwire.ovs.flow_snapshot`) and writes nothing if so: a restarted agent nearly always finds its
rules in place, and a bundle, even one that changes nothing, costs vswitchd a
revalidation of every datapath flow (about 0.3 s at 1,000 ports, on the thread
that also forwards the netdev datapath's packets; diff-flows takes 0.04 s).

Rules vanish without the agent doing anything: a restarted ovs-vswitchd starts
with an empty table, and anyone may run `ovs-ofctl del-flows`. The bridge runs
with fail_mode=secure (set by `OvsBridge.connect`), so an empty table forwards
nothing: isolation holds until `restore()` put the rules back. The table learns
of a loss with no polling: a `ovs-ofctl monitor <bridge> watch:` child holds an
OpenFlow connection to vswitchd. Its end of file means vswitchd went away
(reconnect with backoff, then restore); a DELETED event for a base rule means
someone flushed the table (restore). Base rules carry their own cookie prefix,
which `restore()` never deletes, so the table's own bundles never trigger it.

Writes go over one kept OpenFlow connection (`vifwire.ovs.ofconn`: no process
per bundle); a rule outside its encoder's vocabulary falls back to `ovs-ofctl
--bundle`. Reads (dump, diff-flows) and the watch use ovs-ofctl. All are
asyncio (subprocesses, a unix socket): no thread meets the loop here. Writes
are serialised by one lock, so a restore never interleaves with a put.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Collection, Iterable, Mapping

from vifwire.aio import cancel_and_wait
from vifwire.ovs.flow_snapshot import FlowSnapshots, numbered
from vifwire.ovs.model import Flow, OvsWriteFailed
from vifwire.ovs.ofconn import OpenFlowConnection
from vifwire.ovs.openflow import Unsupported
from vifwire.ovs.runtime import OvsRuntime

log = logging.getLogger(__name__)

# Cookies: the top 16 bits say whose rule it is. Base rules (never deleted by the
# table itself, so their deletion is a loss) use 0x7676; groups 0x7677 + a hash.
# Groups keyed "kept:..." (the firewall's) use 0x7678: `restore()` rewrites them
# but never clears them, so a restarted agent keeps enforcing the previous one's
# until it replaces each group by key (same key, same cookie).
BASE_COOKIE = 0x7676 << 48
GROUP_PREFIX, GROUP_MASK = 0x7677 << 48, 0xFFFF << 48
KEPT, KEPT_PREFIX = "kept:", 0x7678 << 48
OWN_MASK = 0xFFFE << 48  # base and group cookies (0x7676, 0x7677), not the kept ones
BASE = "base"
RECONNECT_S = (0.05, 1.0)
BURST_S = 0.02  # the monitor's lines of one flush come closer together than this


def group_cookie(key: str) -> int:
    prefix = KEPT_PREFIX if key.startswith(KEPT) else GROUP_PREFIX
    return prefix | int.from_bytes(hashlib.blake2b(key.encode(), digest_size=6).digest())


class FlowTable:
    def __init__(self, runtime: OvsRuntime, bridge: str,
                 on_restored: Callable[[], None] | None = None) -> None:
        self._runtime = runtime
        self._bridge = bridge
        self._on_restored = on_restored
        self._groups: dict[str, list[Flow]] = {}
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._openflow = OpenFlowConnection(runtime.run_dir / f"{bridge}.mgmt")
        self._snapshots = FlowSnapshots(runtime, bridge)
        self.restores = 0  # how many times the whole set was made right (written or kept)
        self.kept = 0  # of those, how many found every rule in place and wrote nothing

    # -- what the agent wants ---------------------------------------------

    def base(self, specs: Iterable[str]) -> None:
        """Set the base rules (written by the next `restore()`)."""
        self._groups[BASE] = [Flow(BASE_COOKIE, spec) for spec in specs]

    def stage(self, key: str, specs: Iterable[str]) -> None:
        """Record `key`'s rules without writing them (the next `restore()` does)."""
        flows = [Flow(group_cookie(key), spec) for spec in specs]
        if flows:
            self._groups[key] = flows
        else:
            self._groups.pop(key, None)

    def has(self, key: str) -> bool:
        return key in self._groups

    def group_keys(self) -> list[str]:
        """The keys of the groups held (the base rules are not one)."""
        return [key for key in self._groups if key != BASE]

    async def put(self, key: str, specs: Iterable[str]) -> None:
        """Replace `key`'s rules (none: remove them) in one atomic bundle."""
        await self.put_many({key: specs})

    async def put_many(self, changes: Mapping[str, Iterable[str]],
                       in_place: Collection[str] = ()) -> None:
        """Replace the rules of each key (none: remove them), all in one atomic bundle.

        Keys in `in_place` that hold rules already change by difference: the rules
        no longer wanted deleted one by one, the new ones added, the others left
        alone (a group's member flows, where one new member would otherwise
        rewrite them all: vswitchd then revalidates less and nothing else moves)."""
        groups: dict[str, list[Flow]] = {}
        for key, specs in changes.items():
            cookie = group_cookie(key)  # once per key: a group's member flows may be 1,000s
            groups[key] = [Flow(cookie, spec) for spec in specs]
        async with self._lock:
            lines = []
            for key, flows in groups.items():
                held = self._groups.get(key)
                if key in in_place and held and flows:
                    wanted, had = set(flows), set(held)
                    lines += [f.delete_line() for f in held if f not in wanted]
                    lines += [f"add {f.line()}" for f in flows if f not in had]
                    continue
                lines.append(f"delete cookie={group_cookie(key):#x}/-1")
                lines += [f"add {f.line()}" for f in flows]
            if lines:
                await self._bundle(lines)
            for key, flows in groups.items():
                if flows:
                    self._groups[key] = flows
                else:
                    self._groups.pop(key, None)

    async def restore(self) -> None:
        """Rewrite every rule from state: one bundle, or group by group if that fails
        (a port whose device went away must not keep the others out)."""
        async with self._lock:
            clear = f"delete cookie={GROUP_PREFIX:#x}/{GROUP_MASK:#x}"
            lines = [clear, *(f"add {f.line()}" for flows in self._groups.values()
                              for f in flows)]
            try:
                await self._bundle(lines)
            except OvsWriteFailed as exc:
                log.warning("restoring all flows failed, group by group: %s", exc)
                # The base rules (NORMAL) last: until then nothing is switched
                # but what a kept (firewall) group passed.
                await self._bundle([clear])
                for key, flows in list(self._groups.items()):
                    if key == BASE:
                        continue
                    try:
                        await self._bundle([f"add {f.line()}" for f in flows])
                    except OvsWriteFailed as one:
                        log.warning("flows of %s not restored: %s", key, one)
                base = self._groups.get(BASE, [])
                await self._bundle([f"add {f.line()}" for f in base])
            self.restores += 1
        log.info("flows of %s restored (%d groups)", self._bridge, len(self._groups))
        if self._on_restored is not None:
            self._on_restored()

    async def cookies(self, prefix: int = KEPT_PREFIX) -> set[int]:
        """The cookies of the bridge's flows under `prefix` (the top 16 bits)."""
        proc = await self._spawn("dump-flows", self._bridge, f"cookie={prefix:#x}/{GROUP_MASK:#x}")
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise OvsWriteFailed(f"flows of {self._bridge}: {err.decode().strip()}")
        return {int(c, 16) for c in re.findall(rb"cookie=(0x[0-9a-f]+)", out)}

    async def sweep(self, prefix: int = KEPT_PREFIX) -> int:
        """Delete the flows under `prefix` no group held here owns (a previous
        agent's); returns how many groups went."""
        async with self._lock:
            held = {group_cookie(key) for key in self._groups if key != BASE}
            stale = await self.cookies(prefix) - held
            if stale:
                await self._bundle([f"delete cookie={c:#x}/-1" for c in sorted(stale)])
        return len(stale)

    async def ensure(self) -> None:
        """`restore()`, unless the bridge holds exactly the table's own rules (base
        and group cookies) wanted already.

        Anything else counts as a difference and restores: a rule missing, extra
        or changed, a port name the bridge does not have. The firewall's kept
        groups are the firewall's to compare (`Firewalls.adopt`): at 1,000 ports
        they are ~25 times as many. A loss after the check is the watch's to
        see, as after a restore."""
        async with self._lock:
            same = await self._holds_own_rules()
            if same:
                self.restores += 1
                self.kept += 1
        if same:
            log.info("flows of %s already in place (%d groups)", self._bridge,
                     len(self._groups))
            if self._on_restored is not None:
                self._on_restored()
            return
        await self.restore()

    async def _holds_own_rules(self) -> bool:
        try:
            found = await self._snapshots.read(BASE_COOKIE, OWN_MASK)
        except OvsWriteFailed as exc:
            log.debug("flows of %s unreadable (%s): restoring", self._bridge, exc)
            return False
        wanted = [numbered(f.line(), found.ports) for key, flows in self._groups.items()
                  if not key.startswith(KEPT) for f in flows]
        if None in wanted:
            return False
        differ = await self._snapshots.differing(
            [line for lines in found.flows.values() for line in lines],
            [line for line in wanted if line is not None])
        return differ == set()

    # -- keeping them installed -------------------------------------------

    async def start(self) -> None:
        """Start watching vswitchd; returns once the watch is connected."""
        self._watcher = asyncio.get_running_loop().create_task(
            self._watch(), name=f"ovs:flows:{self._bridge}")
        await self._connected.wait()

    async def stop(self) -> None:
        if self._watcher is not None:
            await cancel_and_wait(self._watcher)
            self._watcher = None
        await self._openflow.close()

    async def _watch(self) -> None:
        delay = RECONNECT_S[0]
        first = True
        while True:
            # The monitor prints its reply on stdout but the events on stderr.
            # Deletions only: additions (every rule we write) would cost it and
            # us a line each.
            proc = await self._spawn("monitor", self._bridge, "watch:!initial,!add,!modify",
                                     merged=True)
            try:
                assert proc.stdout is not None
                if await _connected(proc.stdout):
                    delay = RECONNECT_S[0]
                    if first:
                        first = False
                        self._connected.set()
                    else:
                        await self.refresh()
                    base = f"cookie={BASE_COOKIE:#x}".encode()
                    while line := await proc.stdout.readline():
                        if b"event=DELETED" in line and base in line:
                            # A flush deletes all at once: one restore for the burst.
                            if not await _quiet(proc.stdout, BURST_S):
                                break
                            log.warning("a base flow of %s was deleted: restoring", self._bridge)
                            await self.refresh()
            finally:
                await _end(proc)
            log.warning("lost the OpenFlow connection to %s; reconnecting", self._bridge)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_S[1])

    async def refresh(self) -> None:
        """`restore()`, logging a failure instead of raising it."""
        try:
            await self.restore()
        except OvsWriteFailed as exc:  # vswitchd went away again: the watch sees it
            log.warning("restoring flows of %s failed: %s", self._bridge, exc)

    # -- ovs-ofctl ---------------------------------------------------------

    async def _spawn(self, *args: str, stdin: bool = False,
                     merged: bool = False) -> asyncio.subprocess.Process:
        # OVS_RUNDIR in the runtime's env makes ovs-ofctl find "<bridge>.mgmt".
        return await asyncio.create_subprocess_exec(
            "ovs-ofctl", *args, env=self._runtime.env(),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merged else asyncio.subprocess.PIPE)

    async def _bundle(self, lines: list[str]) -> None:
        try:
            await self._openflow.bundle(lines)
            return
        except Unsupported as exc:
            log.debug("flows of %s through ovs-ofctl: %s", self._bridge, exc)
        proc = await self._spawn("--bundle", "add-flows", self._bridge, "-", stdin=True)
        _, err = await proc.communicate("\n".join(lines).encode() + b"\n")
        if proc.returncode != 0:
            raise OvsWriteFailed(f"flows of {self._bridge}: {err.decode().strip()}")


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Stop the monitor with SIGTERM, so it removes its control socket
    (ovs-ofctl.<pid>.ctl in the run dir, which SIGKILL would leave behind)."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 2.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _quiet(stdout: asyncio.StreamReader, gap: float) -> bool:
    """Read lines until none comes for `gap` seconds; False at end of file."""
    while True:
        try:
            line = await asyncio.wait_for(stdout.readline(), gap)
        except TimeoutError:
            return True
        if not line:
            return False


async def _connected(stdout: asyncio.StreamReader) -> bool:
    """Whether the monitor got its first reply (it is connected), reading past
    any warning it logs first; end of file: it failed (vswitchd is down)."""
    while line := await stdout.readline():
        if line.startswith(b"NXST_FLOW_MONITOR reply"):
            return True
        log.debug("ovs-ofctl monitor: %s", line.decode(errors="replace").strip())
    return False
