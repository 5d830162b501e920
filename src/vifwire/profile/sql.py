"""SQL probe: how many statements, and where their time goes.

Installed on an `Engine` through SQLAlchemy's engine events; it splits each
statement's life in two:

* build   = before_execute -> before_cursor_execute: coercing the statement,
  the cache lookup, compiling it on a miss, processing parameters -- Python
  work on the server's CPU (the "33 % building SQL queries" of the report);
* execute = before_cursor_execute -> after_cursor_execute: the DBAPI call.

Build is measured as the calling thread's CPU time (`time.thread_time`), not
wall time: in the embedded stack the agent and the notifier run threads in the
same process, and a statement that waited for the GIL between two clock reads
used to be charged a whole switch interval (5 ms) of "building". Execute is
the driver call's wall time (for PostgreSQL it includes the server's work and
the round trip), with its CPU beside it (`execute_cpu_s`).

Statements run straight on the driver (`vifwire.db.fast`) bypass those events;
the probe registers itself as the engine's `StatementObserver`
(`vifwire.db.engine.hooks`) and `Fast` reports them through `record`, counted
with cache state "prepared".

It also counts the compiled-cache outcome of each statement from
`ExecutionContext.cache_hit` (hit, miss, caching disabled, no cache key; raw
driver SQL has no compiled form). Nested executions -- a `begin` listener that
runs `BEGIN IMMEDIATE` inside another statement -- are subtracted from the outer
statement's build time so nothing is counted twice. Frames are kept per thread
and connection, and so are the counters (one dict per thread, summed by
`snapshot`): counting a statement takes no lock, a dict lookup and four
additions (bench/db_ab.py's "sql probe on" row is the probe's whole cost).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, event
from sqlalchemy.engine import default

from vifwire.db.engine import hooks

_CACHE_STATES: dict[Any, str] = {
    default.CACHE_HIT: "hit",
    default.CACHE_MISS: "miss",
    default.CACHING_DISABLED: "disabled",
    default.NO_CACHE_KEY: "no_key",
    default.NO_DIALECT_SUPPORT: "no_dialect_support",
}
_TOP_STATEMENTS = 20
_MAX_KEYS = 4096
# What each figure of a snapshot measures (written into it: the report says so).
CLOCKS = {"build_s": "thread CPU", "execute_s": "wall", "execute_cpu_s": "thread CPU",
          "build_share": "build_s / (build_s + execute_cpu_s)"}


@dataclass
class _Frame:
    start: float  # thread CPU
    nested: float = 0.0
    build: float | None = None


# One thread's counters: (statement, cache state) -> [count, build, execute, execute CPU].
_Counts = dict[tuple[str, str], list[float]]
_OTHER = "(other statements: too many distinct ones)"


class SqlProbe:
    """Counts statements on `engine` (an `Engine` or an `AsyncEngine`) until `remove()`."""

    def __init__(self, engine: Any) -> None:
        self.engine: Engine = getattr(engine, "sync_engine", engine)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._threads: list[_Counts] = []
        self._started = time.time()
        self._listeners = [
            ("before_execute", self._before_execute),
            ("before_cursor_execute", self._before_cursor_execute),
            ("after_cursor_execute", self._after_cursor_execute),
            ("after_execute", self._after_execute),
        ]
        for name, fn in self._listeners:
            event.listen(self.engine, name, fn)
        hooks(self.engine).observer = self

    def remove(self) -> None:
        for name, fn in self._listeners:
            if event.contains(self.engine, name, fn):
                event.remove(self.engine, name, fn)
        engine_hooks = hooks(self.engine)
        if engine_hooks.observer is self:
            engine_hooks.observer = None

    def record(self, statement: str, build_cpu_s: float, execute_s: float,
               execute_cpu_s: float) -> None:
        """Count a statement run on the driver's cursor, outside SQLAlchemy's events."""
        self._add(statement, build_cpu_s, execute_s, execute_cpu_s, "prepared")

    def _frames(self, conn: Any) -> list[_Frame]:
        stacks: dict[int, list[_Frame]] = self._local.__dict__.setdefault("stacks", {})
        return stacks.setdefault(id(conn), [])

    def _before_execute(self, conn: Any, *_args: Any) -> None:
        self._frames(conn).append(_Frame(time.thread_time()))

    def _before_cursor_execute(self, conn: Any, _cursor: Any, _statement: str, _params: Any,
                               _context: Any, _executemany: bool) -> None:
        now = time.thread_time()
        frames = self._frames(conn)
        if frames and frames[-1].build is None:
            frames[-1].build = max(now - frames[-1].start - frames[-1].nested, 0.0)
        self._local.cursor_start = (time.perf_counter(), now)

    def _after_cursor_execute(self, conn: Any, _cursor: Any, statement: str, _params: Any,
                              context: Any, _executemany: bool) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        wall0, cpu0 = getattr(self._local, "cursor_start", (wall, cpu))
        frames = self._frames(conn)
        build = frames[-1].build if frames else None
        self._add(statement, build or 0.0, wall - wall0, cpu - cpu0, _cache_state(context))

    def _add(self, statement: str, build: float, elapsed: float, elapsed_cpu: float,
             state: str) -> None:
        counts: _Counts | None = self._local.__dict__.get("counts")
        if counts is None:
            counts = self._local.counts = {}
            with self._lock:
                self._threads.append(counts)
        row = counts.get((statement, state))
        if row is None:  # compiled statements come back as the same strings
            if len(counts) >= _MAX_KEYS:  # IN lists of every length
                statement = _OTHER
            row = counts.setdefault((statement, state), [0, 0.0, 0.0, 0.0])
        row[0] += 1
        row[1] += build
        row[2] += elapsed
        row[3] += elapsed_cpu

    def _after_execute(self, conn: Any, *_args: Any) -> None:
        frames = self._frames(conn)
        if not frames:
            return
        frame = frames.pop()
        if frames:
            frames[-1].nested += time.thread_time() - frame.start

    def snapshot(self) -> dict[str, Any]:
        """Totals so far, as the JSON-ready `sql` section of profile.json."""
        with self._lock:
            per_thread = [list(counts.items()) for counts in self._threads]
        cache: Counter[str] = Counter()
        by_statement: dict[str, list[float]] = {}
        total = [0, 0.0, 0.0, 0.0]
        for items in per_thread:
            for (statement, state), row in items:
                cache[state] += int(row[0])
                key = " ".join(statement.split())[:160]
                acc = by_statement.setdefault(key, [0, 0.0, 0.0])
                for i in range(4):
                    total[i] += row[i]
                for i in range(3):
                    acc[i] += row[i]
        rows = sorted(by_statement.items(), key=lambda kv: kv[1][1] + kv[1][2],
                      reverse=True)[:_TOP_STATEMENTS]
        snap: dict[str, Any] = {
            "statements": int(total[0]), "build_s": round(total[1], 6),
            "execute_s": round(total[2], 6), "execute_cpu_s": round(total[3], 6),
            "cache": dict(cache),
            "top": [{"sql": k, "count": int(v[0]), "build_s": round(v[1], 6),
                     "execute_s": round(v[2], 6)} for k, v in rows]}
        cacheable = cache.get("hit", 0) + cache.get("miss", 0)
        snap["cache_hit_ratio"] = round(cache.get("hit", 0) / cacheable, 4) if cacheable else None
        snap["build_share"] = _build_share(snap["build_s"], snap["execute_cpu_s"])
        snap["clocks"] = dict(CLOCKS)
        snap["dialect"] = self.engine.dialect.name
        snap["window"] = [self._started, time.time()]
        return snap

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(self.snapshot(), option=orjson.OPT_INDENT_2))
        return path


def _cache_state(context: Any) -> str:
    if context is None or getattr(context, "compiled", None) is None:
        return "raw"
    return _CACHE_STATES.get(getattr(context, "cache_hit", None), "unknown")


def _build_share(build_s: float, execute_cpu_s: float) -> float | None:
    """Of the CPU this process spent on statements, the part spent building them
    (both thread CPU: the database server's own time is not in it)."""
    cpu = build_s + execute_cpu_s
    return round(build_s / cpu, 4) if cpu else None


def install_sql_probe(engine: Any) -> SqlProbe:
    """Start probing `engine`; call `.write(trace_dir / f"sql-{component}-{pid}.json")` at exit."""
    return SqlProbe(engine)


def merge_snapshots(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum several probes' snapshots (one per server worker) into one."""
    if not snapshots:
        return {}
    cache: Counter[str] = Counter()
    top: dict[str, dict[str, Any]] = {}
    for snap in snapshots:
        cache.update(snap.get("cache", {}))
        for row in snap.get("top", []):
            acc = top.setdefault(row["sql"], {"sql": row["sql"], "count": 0, "build_s": 0.0,
                                              "execute_s": 0.0})
            for k in ("count", "build_s", "execute_s"):
                acc[k] += row[k]
    build = sum(s.get("build_s", 0.0) for s in snapshots)
    execute = sum(s.get("execute_s", 0.0) for s in snapshots)
    execute_cpu = sum(s.get("execute_cpu_s", 0.0) for s in snapshots)
    cacheable = cache.get("hit", 0) + cache.get("miss", 0)
    return {
        "statements": sum(s.get("statements", 0) for s in snapshots),
        "build_s": round(build, 6), "execute_s": round(execute, 6),
        "execute_cpu_s": round(execute_cpu, 6), "cache": dict(cache), "clocks": dict(CLOCKS),
        "cache_hit_ratio": round(cache.get("hit", 0) / cacheable, 4) if cacheable else None,
        "build_share": _build_share(build, execute_cpu),
        "top": sorted(top.values(), key=lambda r: r["build_s"] + r["execute_s"],
                      reverse=True)[:_TOP_STATEMENTS],
        "dialect": snapshots[0].get("dialect"),
        "probes": len(snapshots),
    }
