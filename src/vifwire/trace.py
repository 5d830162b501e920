"""Structured timing events: the profiler's raw material.

Each component gets a `Tracer` named after it and marks the stages a port passes
(`Stage`), stamped with the host's wall clock (`time.time()`), which every process
on a host shares. Marking costs one bounded-deque append on the hot path, so the
stack always keeps its recent events in memory (the profiler reads them over the
API after a storm) and, given a directory, writes them as JSON lines to
`<trace_dir>/<component>-<pid>.jsonl` on `flush()`. `NullTracer` (tests, tools)
makes every mark a no-op.
"""

from __future__ import annotations

import os
import time
from collections import deque
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson


class Stage(StrEnum):
    CREATED = "created"  # server committed the port
    BOUND = "bound"  # server committed the binding
    PUSHED = "pushed"  # server handed the details to the agent's topic
    PLUGGED = "plugged"  # compute added the VIF to OVSDB
    SEEN = "seen"  # agent received the OVSDB event
    WIRED = "wired"  # agent set the local VLAN tag
    UP = "up"  # agent reported the port up
    ACTIVE = "active"  # server committed status ACTIVE
    EVENT_SENT = "event_sent"  # notifier posted network-vif-plugged
    EVENT_RECEIVED = "event_received"  # compute received network-vif-plugged


# The waits between SEEN and WIRED, in order: the agent's WIRED mark carries when
# each ended (`steps`: vswitchd numbered the VIF, its remote groups were held,
# its firewall bundle was written). A port without a firewall passes all three
# at once: only rules need its ofport and groups.
WIRING_STEPS = ("numbered", "members", "filtered")


# ~100 bytes an event: a long-running stack keeps at most a few tens of MB.
MAX_EVENTS = 200_000


class Tracer:
    def __init__(self, component: str, directory: Path | None = None) -> None:
        self.component = component
        self.directory = directory
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def mark(self, stage: Stage | str, port_id: str, t: float | None = None, **extra: Any) -> None:
        event = {"t": time.time() if t is None else t, "stage": str(stage), "port": port_id,
                 "component": self.component}
        if extra:
            event.update(extra)
        self.events.append(event)

    def flush(self) -> None:
        if self.directory is None or not self.events:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.component}-{os.getpid()}.jsonl"
        events, self.events = self.events, deque(maxlen=MAX_EVENTS)
        with path.open("ab") as out:
            out.writelines(orjson.dumps(e) + b"\n" for e in events)

    def since(self, t: float) -> list[dict[str, Any]]:
        """Events marked at or after `t`, oldest first (they stay in memory)."""
        return [e for e in list(self.events) if e["t"] >= t]


class NullTracer(Tracer):
    def __init__(self, component: str = "none") -> None:
        super().__init__(component, None)

    def mark(self, stage: Stage | str, port_id: str, t: float | None = None, **extra: Any) -> None:
        return None


def make_tracer(component: str, directory: Path | None) -> Tracer:
    return Tracer(component, directory) if directory is not None else NullTracer(component)


def write_events(directory: Path, component: str, pid: int,
                 events: list[dict[str, Any]]) -> Path:
    """Write events another process recorded, as that process's flush() would have."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{component}-{pid}.jsonl"
    with path.open("ab") as out:
        out.writelines(orjson.dumps(e) + b"\n" for e in events)
    return path
