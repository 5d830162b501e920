"""Synthetic trace directories with known, injected delays (test helpers)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import orjson

from vifwire.profile.analysis import STAGE_ORDER

COMPONENT_OF = {"created": "server", "bound": "server", "pushed": "server",
                "plugged": "compute", "seen": "agent", "wired": "agent", "up": "agent",
                "active": "server", "event_sent": "server", "event_received": "compute"}
T0 = 1_700_000_000.0

WriteTraces = Callable[..., dict[str, dict[str, float]]]


def make_timelines(n: int = 20, *, delays_ms: Mapping[str, float] | None = None,
                   default_ms: float = 1.0, overrides: Mapping[str, Mapping[str, float]] = {},
                   stages: Iterable[str] = STAGE_ORDER, stagger_ms: float = 5.0,
                   seed: int = 7) -> dict[str, dict[str, float]]:
    """{port: {stage: t}}: each step takes `delays_ms[next_stage]` (+-5 % jitter)."""
    rng = random.Random(seed)
    delays = dict(delays_ms or {})
    out: dict[str, dict[str, float]] = {}
    for i in range(n):
        port = f"port-{i:03d}"
        t = T0 + i * stagger_ms / 1000
        timeline = {}
        for j, stage in enumerate(stages):
            if j:
                ms = overrides.get(port, {}).get(stage, delays.get(stage, default_ms))
                t += ms * rng.uniform(0.95, 1.05) / 1000
            timeline[stage] = t
        out[port] = timeline
    return out


def write_timelines(directory: Path, timelines: Mapping[str, Mapping[str, float]],
                    component_of: Mapping[str, str] = COMPONENT_OF) -> None:
    by_file: dict[str, list[bytes]] = {}
    for port, stages in timelines.items():
        for stage, t in stages.items():
            comp = component_of[stage]
            event = {"t": t, "stage": stage, "port": port, "component": comp}
            by_file.setdefault(f"{comp}-{1000 + len(comp)}.jsonl", []).append(
                orjson.dumps(event) + b"\n")
    directory.mkdir(parents=True, exist_ok=True)
    for name, lines in by_file.items():
        random.Random(1).shuffle(lines)  # files need not be in time order
        (directory / name).write_bytes(b"".join(lines))
