"""The run state file, and the cleanup of runs that crashed or were kept.

A storm writes `<run_dir>/compute/<run id>.json` before it creates anything and
rewrites it (atomically) as Neutron ports, networks, namespaces and taps come
into being. Rewrites are coalesced: `add()` records at once in memory and
schedules one write for everything added in the same loop turn; `commit()`
waits for that write, and is awaited before a namespace or network is created,
so the file names each of them before it exists. A port is on disk within a
loop turn of its creation; until then its name (`vifwire-<run id>-<i>`) says
whose it is. If the process dies, the file names what it left behind.

At the start of every storm `clean_leftovers` removes what earlier runs of this
run dir left: the namespaces, taps, Neutron ports and networks their state
files list (404 counts as gone), and the interfaces of its own private switch
tagged `vifwire-run`. It never deletes by name pattern: a `vwvm-*` namespace no
state file of this run dir lists may be another stack's VM. A run
whose process is still alive and still `running` is another storm in progress:
its namespaces, interfaces and resources are left alone. A state file is
removed only once everything it lists is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from vifwire.compute.errors import NeutronClientError, OvsUnavailable, VmError
from vifwire.compute.neutron import NeutronClient, delete_quietly
from vifwire.compute.plug import OvsPlugger
from vifwire.compute.vm import delete_sync, delete_tap_sync

log = logging.getLogger(__name__)

RUNNING, KEPT, DONE = "running", "kept", "done"


@dataclass
class RunState:
    run_id: str
    path: Path
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    status: str = RUNNING
    neutron_url: str = ""
    bridge: str = ""
    host_netns: str | None = None
    ports: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    taps: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)  # deleted after the ports
    # The write that will carry the latest add()s, while one is scheduled.
    _pending: asyncio.Future[None] | None = field(default=None, init=False, repr=False,
                                                  compare=False)

    @classmethod
    def new(cls, run_dir: Path, run_id: str, **fields: object) -> RunState:
        state = cls(run_id=run_id, path=state_dir(run_dir) / f"{run_id}.json", **fields)  # type: ignore[arg-type]
        state.save()
        return state

    @classmethod
    def load(cls, path: Path) -> RunState:
        data = orjson.loads(path.read_bytes())
        data["path"] = path
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, object]:
        return {"run_id": self.run_id, "pid": self.pid, "started": self.started,
                "status": self.status, "neutron_url": self.neutron_url, "bridge": self.bridge,
                "host_netns": self.host_netns, "ports": self.ports, "networks": self.networks,
                "namespaces": self.namespaces, "taps": self.taps,
                "security_groups": self.security_groups}

    def save(self) -> None:
        """Write it all now (which also carries any scheduled write)."""
        pending, self._pending = self._pending, None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2))
            tmp.replace(self.path)
        except OSError as exc:
            if pending is not None and not pending.done():
                pending.set_exception(exc)
                pending.exception()  # retrieved: commit() re-raises it, add() logged it
            raise
        if pending is not None and not pending.done():
            pending.set_result(None)

    def add(self, **items: str) -> None:
        """Record new resources, e.g. add(port=id, namespace=name, tap=name).

        On a running loop the write is scheduled (one per loop turn, however many
        add()s); `await commit()` to have it on disk. Without a loop it is written now.
        """
        for kind, value in items.items():
            values: list[str] = getattr(self, kind + "s")
            if value not in values:
                values.append(value)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.save()
            return
        if self._pending is None:
            self._pending = loop.create_future()
            loop.call_soon(self._write_pending)

    def _write_pending(self) -> None:
        if self._pending is None:
            return  # a save() already carried it
        try:
            self.save()
        except OSError as exc:
            log.warning("cannot write run state %s: %s", self.path, exc)

    async def commit(self) -> None:
        """Wait until everything add()ed so far is on disk."""
        if self._pending is not None:
            await asyncio.shield(self._pending)

    def discard(self, **items: str) -> None:
        for kind, value in items.items():
            values: list[str] = getattr(self, kind + "s")
            if value in values:
                values.remove(value)

    def alive(self) -> bool:
        """Another process's storm still in progress."""
        if self.status != RUNNING or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def state_dir(run_dir: Path) -> Path:
    return run_dir / "compute"


def load_states(run_dir: Path) -> list[RunState]:
    states = []
    for path in sorted(state_dir(run_dir).glob("*.json")):
        try:
            states.append(RunState.load(path))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable run state %s: %s", path, exc)
    return states


@dataclass
class CleanupReport:
    runs: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.namespaces or self.interfaces or self.ports or self.networks
                    or self.security_groups)


async def clean_leftovers(run_dir: Path, plugger: OvsPlugger,
                          neutron: NeutronClient | None) -> CleanupReport:
    """Remove what earlier, finished or dead runs left behind (see module docstring)."""
    report = CleanupReport()
    states = load_states(run_dir)
    live = [s for s in states if s.alive()]
    dead = [s for s in states if not s.alive()]
    live_ids = {s.run_id for s in live}
    protected_ns = {n for s in live for n in s.namespaces}

    for tap, run_id in (await plugger.run_interfaces()).items():
        if run_id in live_ids:
            continue
        try:
            await plugger.unplug(tap)
            report.interfaces.append(tap)
        except OvsUnavailable as exc:
            report.errors.append(str(exc))

    stale_ns: list[str] = []
    for state in dead:
        stale_ns += [n for n in state.namespaces if n not in stale_ns and n not in protected_ns]
    for namespace in stale_ns:
        try:
            await asyncio.to_thread(delete_sync, namespace, None)
            report.namespaces.append(namespace)
        except VmError as exc:
            report.errors.append(str(exc))

    for state in dead:
        report.runs.append(state.run_id)
        for tap in state.taps:
            with contextlib.suppress(OSError, VmError):
                await asyncio.to_thread(delete_tap_sync, tap, state.host_netns)
        holds_neutron = bool(state.ports or state.networks or state.security_groups)
        if holds_neutron and (neutron is None or
                              not await _clean_neutron(state, neutron, report)):
            continue  # keep the file: Neutron may still hold what it lists
        state.path.unlink(missing_ok=True)
    return report


async def _clean_neutron(state: RunState, neutron: NeutronClient,
                         report: CleanupReport) -> bool:
    ok = True
    for kind, call, done in (("port", neutron.delete_port, report.ports),
                             ("network", neutron.delete_network, report.networks),
                             ("security_group", neutron.delete_security_group,
                              report.security_groups)):
        for resource_id in list(getattr(state, kind + "s")):
            try:
                if await delete_quietly(call, resource_id):
                    done.append(resource_id)
                state.discard(**{kind: resource_id})
            except NeutronClientError as exc:
                ok = False
                report.errors.append(str(exc))
    if not ok:
        state.save()
    return ok
