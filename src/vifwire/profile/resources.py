"""Resource sampler: dstat for a boot storm, per component.

A daemon thread wakes every `interval` seconds (<= 0.25 s) and records, for each
component (one name -> one or more pids), the summed CPU seconds of its
processes (user + system, all threads, plus children they reaped), the CPU %
since the last sample and the RSS; and for the host, CPU usr/sys/idle/wait %
like dstat's total-cpu-usage and memory used/free. A process that exits keeps
its last CPU seconds, so a component's total never goes backwards. CPU seconds
over the window are the last sample minus the first:
`ResourceTimeline.cpu_seconds()`.

`stop()` takes one last sample, so even a window shorter than one interval has
a start and an end.

A component may also be part of one process: `ThreadGroup(pid, prefix)` counts
the threads whose OS name starts with `prefix` (the embedded stack names its
agent's threads "vw-agent"), and `ThreadGroup(pid, prefix, exclude=True)` the
rest of the process, so server and agent are told apart though they share it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import psutil

MAX_INTERVAL = 0.25


@dataclass(frozen=True)
class ThreadGroup:
    """The threads of `pid` named `prefix*` (or, with exclude, all the others)."""

    pid: int
    prefix: str
    exclude: bool = False


def _thread_cpu(pid: int, prefix: str) -> float:
    """CPU seconds of the live threads of `pid` whose OS name starts with `prefix`."""
    total = 0.0
    for thread in psutil.Process(pid).threads():
        try:
            name = Path(f"/proc/{pid}/task/{thread.id}/comm").read_text().strip()
        except OSError:
            continue
        if name.startswith(prefix):
            total += thread.user_time + thread.system_time
    return total


class _ThreadComponent:
    def __init__(self, group: ThreadGroup) -> None:
        self.group = group
        self.last = (0.0, 0)

    def read(self) -> tuple[float, int]:
        try:
            proc = psutil.Process(self.group.pid)
            with proc.oneshot():
                times = proc.cpu_times()
                rss = proc.memory_info().rss
            matched = _thread_cpu(self.group.pid, self.group.prefix)
        except psutil.Error:
            return self.last  # gone: keep its last CPU seconds
        if self.group.exclude:
            self.last = (times.user + times.system - matched, rss)
        else:
            self.last = (matched, 0)  # memory is the process's; counted on the other side
        return self.last
STACK = "stack (server+agent)"
OVS_PROCESSES = ("ovsdb-server", "ovs-vswitchd")


@dataclass
class ResourceTimeline:
    """Samples of one window; JSON-ready through `to_dict()` / `from_dict()`."""

    interval: float
    ncpu: int
    components: dict[str, list[int]]
    # {component: [{"t", "cpu_s", "cpu_pct", "rss"}]}
    samples: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    # [{"t", "usr", "sys", "idle", "wai", "mem_used", "mem_free", "mem_available"}]
    system: list[dict[str, float]] = field(default_factory=list)
    # The sampling process's own CPU (user + system) at stop: the profiler's cost
    # outside the processes it watches.
    sampler_cpu_s: float = 0.0

    def cpu_at(self, name: str, t: float) -> float:
        """A component's cumulative CPU seconds at time t, linear between samples."""
        rows = self.samples.get(name) or []
        if not rows:
            return 0.0
        if t <= rows[0]["t"]:
            return rows[0]["cpu_s"]
        for before, after in itertools.pairwise(rows):
            if t <= after["t"]:
                span = after["t"] - before["t"]
                share = (t - before["t"]) / span if span > 0 else 1.0
                return before["cpu_s"] + share * (after["cpu_s"] - before["cpu_s"])
        return rows[-1]["cpu_s"]

    def cpu_between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds per component from `start` to `end` (interpolated)."""
        return {name: round(max(self.cpu_at(name, end) - self.cpu_at(name, start), 0.0), 4)
                for name in self.samples}

    def cpu_seconds(self) -> dict[str, float]:
        out = {}
        for name, rows in self.samples.items():
            out[name] = round(rows[-1]["cpu_s"] - rows[0]["cpu_s"], 4) if rows else 0.0
        return dict(sorted(out.items(), key=lambda kv: kv[1], reverse=True))

    def window(self) -> tuple[float, float]:
        times = [s["t"] for s in self.system]
        return (times[0], times[-1]) if times else (0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"interval": self.interval, "ncpu": self.ncpu, "components": self.components,
                "window": list(self.window()), "cpu_seconds": self.cpu_seconds(),
                "samples": self.samples, "system": self.system,
                "sampler_cpu_s": self.sampler_cpu_s}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResourceTimeline:
        return cls(interval=data["interval"], ncpu=data["ncpu"],
                   components={k: list(v) for k, v in data["components"].items()},
                   samples={k: list(v) for k, v in data["samples"].items()},
                   system=list(data["system"]),
                   sampler_cpu_s=float(data.get("sampler_cpu_s", 0.0)))

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(self.to_dict()))
        return path

    @classmethod
    def read(cls, path: Path) -> ResourceTimeline:
        return cls.from_dict(orjson.loads(path.read_bytes()))


class _Component:
    def __init__(self, pids: Iterable[int]) -> None:
        self.procs: dict[int, psutil.Process] = {}
        self.last_cpu: dict[int, float] = {}
        for pid in pids:
            try:
                self.procs[pid] = psutil.Process(pid)
            except psutil.Error:
                self.last_cpu[pid] = 0.0

    def read(self) -> tuple[float, int]:
        rss = 0
        for pid, proc in self.procs.items():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    # Reaped children count too: the compute's Nova process and pings.
                    self.last_cpu[pid] = (times.user + times.system + times.children_user
                                          + times.children_system)
                    rss += proc.memory_info().rss
            except psutil.Error:
                pass  # gone: keep its last CPU seconds
        return sum(self.last_cpu.values()), rss


class ResourceSampler:
    """Samples `components` ({name: pid or [pids]}) from `start()` to `stop()`."""

    def __init__(self, components: Mapping[str, int | Iterable[int] | ThreadGroup],
                 interval: float = 0.2) -> None:
        self.interval = min(interval, MAX_INTERVAL)
        self.pids = {name: [spec.pid] if isinstance(spec, ThreadGroup) else
                     [spec] if isinstance(spec, int) else list(spec)
                     for name, spec in components.items()}
        self._components: dict[str, _Component | _ThreadComponent] = {
            name: _ThreadComponent(spec) if isinstance(spec, ThreadGroup) else
            _Component(self.pids[name]) for name, spec in components.items()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.timeline = ResourceTimeline(self.interval, psutil.cpu_count() or 1, self.pids,
                                         {name: [] for name in self.pids})
        self._last: dict[str, tuple[float, float]] = {}
        self._own_at_start = 0.0

    def start(self) -> ResourceSampler:
        own = psutil.Process().cpu_times()
        self._own_at_start = own.user + own.system
        psutil.cpu_times_percent(interval=None)  # prime the system-wide delta
        self._sample()
        self._thread = threading.Thread(target=self._run, name="profile:sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> ResourceTimeline:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._sample()
            own = psutil.Process().cpu_times()  # sampling only, not start-up
            used = own.user + own.system - self._own_at_start
            self.timeline = replace(self.timeline, sampler_cpu_s=round(used, 4))
        return self.timeline

    def __enter__(self) -> ResourceSampler:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        now = time.time()
        for name, comp in self._components.items():
            cpu_s, rss = comp.read()
            prev = self._last.get(name)
            pct = 0.0
            if prev is not None and now > prev[0]:
                pct = max(cpu_s - prev[1], 0.0) / (now - prev[0]) * 100
            self._last[name] = (now, cpu_s)
            self.timeline.samples[name].append(
                {"t": now, "cpu_s": round(cpu_s, 4), "cpu_pct": round(pct, 2), "rss": rss})
        cpu = psutil.cpu_times_percent(interval=None)
        mem = psutil.virtual_memory()
        self.timeline.system.append({
            "t": now, "usr": cpu.user + getattr(cpu, "nice", 0.0), "sys": cpu.system,
            "idle": cpu.idle, "wai": getattr(cpu, "iowait", 0.0),
            "mem_used": mem.used, "mem_free": mem.free, "mem_available": mem.available,
        })


def find_pids(names: Iterable[str] = OVS_PROCESSES) -> dict[str, list[int]]:
    """{process name: pids} for running processes with those names (e.g. OVS daemons)."""
    wanted = set(names)
    found: dict[str, list[int]] = {}
    for proc in psutil.process_iter(["name"]):
        name = proc.info.get("name")
        if name in wanted:
            found.setdefault(name, []).append(proc.pid)
    return found


def storm_components(*, stack: int | Iterable[int] | None = None,
                     server: Iterable[int] = (), agent: Iterable[int] = (),
                     compute: int | None = None,
                     include_ovs: bool = True) -> dict[str, list[int]]:
    """The usual component map for a storm, with the OVS daemons found by name.

    `stack` is the embedded server+agent process; `server`/`agent` are separate
    processes when they run apart (several server workers sum under one name).
    """
    out: dict[str, list[int]] = {}
    if stack is not None:
        out[STACK] = [stack] if isinstance(stack, int) else list(stack)
    if server := list(server):
        out["server workers"] = server
    if agent := list(agent):
        out["agent"] = agent
    if compute is not None:
        out["compute"] = [compute]
    if include_ovs:
        out.update(find_pids(OVS_PROCESSES))
    return out
