"""Per-port timelines and stage-transition statistics, from trace files.

Pure functions over the JSON lines that `vifwire.trace.Tracer` writes. A port's
timeline maps each stage to the first time any component marked it; a stage
nobody marked is absent, never interpolated. Transitions are taken between
consecutive *visible* stages (the stages marked for at least one port, in
`STAGE_ORDER`), so against a foreign Neutron, where only the compute side
traces, they become created->bound->plugged->active->event_received. A port
contributes to a transition only when it has both ends.

The end-to-end span is plugged->event_received: the time Nova waits for
network-vif-plugged after the VIF is in OVSDB. `dominant()` names the transition
inside that span with the largest share of the summed medians.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from vifwire.trace import Stage

STAGE_ORDER: tuple[str, ...] = tuple(str(s) for s in Stage)
END_TO_END = (str(Stage.PLUGGED), str(Stage.EVENT_RECEIVED))
# What each stage is, as a message between lifelines: (sender, receiver).
STAGE_MESSAGES: dict[str, tuple[str, str]] = {
    "created": ("compute", "server"),
    "bound": ("compute", "server"),
    "pushed": ("server", "agent"),
    "plugged": ("compute", "ovsdb"),
    "seen": ("ovsdb", "agent"),
    "wired": ("agent", "ovsdb"),
    "up": ("agent", "server"),
    "active": ("server", "server"),
    "event_sent": ("server", "compute"),
    "event_received": ("server", "compute"),
}
# Stages the compute side can observe on its own against any Neutron.
COMPUTE_VISIBLE = ("created", "bound", "plugged", "active", "event_received")

Timelines = dict[str, dict[str, float]]


def load_events(trace_dir: Path) -> list[dict[str, Any]]:
    """All events of every `*.jsonl` in `trace_dir`, oldest first."""
    events: list[dict[str, Any]] = []
    for path in sorted(trace_dir.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            if line.strip():
                event = orjson.loads(line)
                if {"t", "stage", "port"} <= event.keys():
                    events.append(event)
    events.sort(key=lambda e: e["t"])
    return events


def build_timelines(events: Iterable[Mapping[str, Any]]) -> Timelines:
    """{port: {stage: t}}, keeping the earliest mark of a repeated stage."""
    ports: Timelines = {}
    for event in events:
        stages = ports.setdefault(str(event["port"]), {})
        stage, t = str(event["stage"]), float(event["t"])
        if stage not in stages or t < stages[stage]:
            stages[stage] = t
    return {port: _ordered(stages) for port, stages in ports.items()}


def _ordered(stages: dict[str, float]) -> dict[str, float]:
    known = [s for s in STAGE_ORDER if s in stages]
    other = sorted(s for s in stages if s not in STAGE_ORDER)
    return {s: stages[s] for s in known + other}


def visible_stages(timelines: Timelines) -> list[str]:
    seen = {stage for stages in timelines.values() for stage in stages}
    return [s for s in STAGE_ORDER if s in seen]


def transition_pairs(visible: Sequence[str]) -> list[tuple[str, str]]:
    return list(itertools.pairwise(visible))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        raise ValueError("percentile of nothing")
    pos = (len(sorted_values) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(values_ms: Iterable[float]) -> dict[str, float | int]:
    values = sorted(values_ms)
    if not values:
        return {"n": 0}
    stats: dict[str, float | int] = {"n": len(values), "min": values[0]}
    for q in (50, 90, 99):
        stats[f"p{q}"] = percentile(values, q)
    stats["max"] = values[-1]
    stats["mean"] = sum(values) / len(values)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}


def durations_ms(timelines: Timelines, start: str, end: str) -> dict[str, float]:
    return {port: (st[end] - st[start]) * 1000 for port, st in timelines.items()
            if start in st and end in st}


def transition_key(start: str, end: str) -> str:
    return f"{start}->{end}"


def transition_stats(timelines: Timelines) -> dict[str, dict[str, Any]]:
    """Stats (ms) for each visible transition, then the end-to-end span."""
    pairs = transition_pairs(visible_stages(timelines))
    if END_TO_END not in pairs:
        pairs.append(END_TO_END)
    out: dict[str, dict[str, Any]] = {}
    for start, end in pairs:
        values = durations_ms(timelines, start, end).values()
        out[transition_key(start, end)] = {"from": start, "to": end, **summarize(values)}
    return out


def chain(visible: Sequence[str], start: str = END_TO_END[0],
          end: str = END_TO_END[1]) -> list[tuple[str, str]]:
    """The visible transitions that tile the span start->end."""
    if start not in visible or end not in visible:
        return []
    inner = list(visible[visible.index(start):visible.index(end) + 1])
    return transition_pairs(inner)


def dominant(timelines: Timelines, stats: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The transition with the largest share of the summed p50s inside the span."""
    links = chain(visible_stages(timelines))
    p50 = {transition_key(a, b): float(stats[transition_key(a, b)].get("p50", 0.0))
           for a, b in links if stats.get(transition_key(a, b), {}).get("n")}
    total = sum(max(v, 0.0) for v in p50.values())
    result: dict[str, Any] = {"span": transition_key(*END_TO_END), "p50_total_ms": round(total, 3),
                              "transition": None, "p50_ms": None, "share": None,
                              "shares": {k: round(max(v, 0.0) / total, 4) if total else 0.0
                                         for k, v in p50.items()}}
    if p50 and total > 0:
        name = max(p50, key=lambda k: p50[k])
        result.update(transition=name, p50_ms=round(p50[name], 3),
                      share=round(p50[name] / total, 4))
    return result


def stragglers(timelines: Timelines, n: int = 5) -> list[dict[str, Any]]:
    """The n slowest ports by plugged->event_received, and what held each one."""
    totals = durations_ms(timelines, *END_TO_END)
    slowest = sorted(totals, key=lambda p: totals[p], reverse=True)[:n]
    out = []
    for port in slowest:
        stages = timelines[port]
        links = chain([s for s in STAGE_ORDER if s in stages])
        steps = {transition_key(a, b): (stages[b] - stages[a]) * 1000 for a, b in links}
        worst = max(steps, key=lambda k: steps[k]) if steps else None
        out.append({"port": port, "total_ms": round(totals[port], 3), "worst": worst,
                    "worst_ms": round(steps[worst], 3) if worst else None,
                    "transitions_ms": {k: round(v, 3) for k, v in steps.items()}})
    return out


def busiest_ports(timelines: Timelines, k: int = 4) -> dict[str, Any]:
    """The instant with the most ports in flight, and up to k of those ports.

    In flight = between a port's first and last visible stage. The chosen ports
    are the ones in flight at that instant that took longest end to end, so the
    sequence diagram shows the congestion the way an operator would draw it.
    """
    spans = {p: (min(st.values()), max(st.values())) for p, st in timelines.items() if st}
    if not spans:
        return {"t": None, "in_flight": 0, "ports": []}
    best_t, best = 0.0, -1
    for t, _ in sorted(spans.values()):
        count = sum(1 for a, b in spans.values() if a <= t <= b)
        if count > best:
            best_t, best = t, count
    live = [p for p, (a, b) in spans.items() if a <= best_t <= b]
    live.sort(key=lambda p: spans[p][1] - spans[p][0], reverse=True)
    chosen = sorted(live[:k], key=lambda p: spans[p][0])
    return {"t": best_t, "in_flight": best, "ports": chosen}


def components(events: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted({str(e.get("component", "?")) for e in events})
