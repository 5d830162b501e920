"""Structured timing events: the profiler's raw material.

Each component gets a `Tracer` named after it and marks the stages a port passes
(`Stage`), stamped with the host's wall clock (`time.time()`), which every process
on a host shares. Events are kept in memory and written as JSON lines to
`<trace_dir>/<component>-<pid>.jsonl` on `flush()`, so marking costs a list append
on the hot path. With tracing off, `NullTracer` makes every mark a no-op.
"""

from __future__ import annotations

import os
import time
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


class Tracer:
    def __init__(self, component: str, directory: Path | None) -> None:
        self.component = component
        self.directory = directory
        self.events: list[dict[str, Any]] = []

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
        events, self.events = self.events, []
        with path.open("ab") as out:
            out.writelines(orjson.dumps(e) + b"\n" for e in events)


class NullTracer(Tracer):
    def __init__(self, component: str = "none") -> None:
        super().__init__(component, None)

    def mark(self, stage: Stage | str, port_id: str, t: float | None = None, **extra: Any) -> None:
        return None


def make_tracer(component: str, directory: Path | None) -> Tracer:
    return Tracer(component, directory) if directory is not None else NullTracer(component)
