"""Timelines and transition statistics, checked against injected delays."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from profile_traces import T0, make_timelines, write_timelines

from vifwire.profile import analysis


def _load(directory: Path) -> analysis.Timelines:
    return analysis.build_timelines(analysis.load_events(directory))


def test_injected_delay_is_dominant(tmp_path: Path) -> None:
    write_timelines(tmp_path, make_timelines(40, delays_ms={"wired": 80.0}))
    timelines = _load(tmp_path)
    stats = analysis.transition_stats(timelines)

    wired = stats["seen->wired"]
    assert wired["n"] == 40
    assert wired["p50"] == pytest.approx(80.0, rel=0.06)
    assert 76.0 <= wired["min"] <= wired["p50"] <= wired["p90"] <= wired["p99"] <= wired["max"]
    assert wired["max"] <= 84.0
    assert stats["wired->up"]["p50"] == pytest.approx(1.0, rel=0.06)
    # The span tiles exactly: plugged->seen ... event_sent->event_received = 80 + 5 * 1 ms.
    assert stats["plugged->event_received"]["p50"] == pytest.approx(85.0, rel=0.05)

    dom = analysis.dominant(timelines, stats)
    assert dom["transition"] == "seen->wired"
    assert dom["p50_ms"] == pytest.approx(80.0, rel=0.06)
    assert dom["share"] == pytest.approx(80 / 85, abs=0.02)
    assert set(dom["shares"]) == {"plugged->seen", "seen->wired", "wired->up", "up->active",
                                  "active->event_sent", "event_sent->event_received"}


def test_every_consecutive_transition_and_order(tmp_path: Path) -> None:
    write_timelines(tmp_path, make_timelines(5))
    stats = analysis.transition_stats(_load(tmp_path))
    assert list(stats) == [
        "created->bound", "bound->pushed", "pushed->plugged", "plugged->seen", "seen->wired",
        "wired->up", "up->active", "active->event_sent", "event_sent->event_received",
        "plugged->event_received"]


def test_missing_stages_stay_absent(tmp_path: Path) -> None:
    timelines = make_timelines(10)
    del timelines["port-003"]["wired"]
    write_timelines(tmp_path, timelines)
    loaded = _load(tmp_path)

    assert "wired" not in loaded["port-003"]
    assert "wired" in loaded["port-004"]
    stats = analysis.transition_stats(loaded)
    assert stats["seen->wired"]["n"] == 9
    assert stats["wired->up"]["n"] == 9
    assert stats["plugged->event_received"]["n"] == 10


def test_first_mark_of_a_repeated_stage_wins(tmp_path: Path) -> None:
    lines = [{"t": T0 + 2, "stage": "seen", "port": "p", "component": "agent"},
             {"t": T0 + 1, "stage": "seen", "port": "p", "component": "agent"},
             {"t": T0, "stage": "plugged", "port": "p", "component": "compute"}]
    (tmp_path / "agent-1.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    assert _load(tmp_path) == {"p": {"plugged": T0, "seen": T0 + 1}}


def test_stragglers_name_port_and_transition(tmp_path: Path) -> None:
    timelines = make_timelines(30, overrides={"port-017": {"active": 500.0},
                                              "port-005": {"seen": 200.0}})
    write_timelines(tmp_path, timelines)
    slow = analysis.stragglers(_load(tmp_path), n=3)

    assert [s["port"] for s in slow[:2]] == ["port-017", "port-005"]
    assert slow[0]["worst"] == "up->active"
    assert slow[0]["worst_ms"] == pytest.approx(500.0, rel=0.06)
    assert slow[1]["worst"] == "plugged->seen"
    assert slow[0]["total_ms"] == pytest.approx(505.0, rel=0.06)


def test_external_visibility(tmp_path: Path) -> None:
    stages = ("created", "bound", "plugged", "active", "event_received")
    timelines = make_timelines(8, stages=stages, delays_ms={"event_received": 30.0})
    write_timelines(tmp_path, timelines, component_of=dict.fromkeys(stages, "compute"))
    loaded = _load(tmp_path)

    assert analysis.visible_stages(loaded) == list(stages)
    stats = analysis.transition_stats(loaded)
    assert list(stats) == ["created->bound", "bound->plugged", "plugged->active",
                           "active->event_received", "plugged->event_received"]
    dom = analysis.dominant(loaded, stats)
    assert dom["transition"] == "active->event_received"


def test_percentile_interpolates() -> None:
    values = [float(v) for v in range(1, 101)]
    assert analysis.percentile(values, 50) == pytest.approx(50.5)
    assert analysis.percentile(values, 90) == pytest.approx(90.1)
    assert analysis.percentile([3.0], 99) == 3.0
    assert analysis.summarize([]) == {"n": 0}


def test_busiest_ports_picks_the_most_in_flight() -> None:
    timelines = {"a": {"plugged": 0.0, "event_received": 10.0},
                 "b": {"plugged": 1.0, "event_received": 3.0},
                 "c": {"plugged": 2.0, "event_received": 4.0},
                 "d": {"plugged": 20.0, "event_received": 21.0}}
    busiest = analysis.busiest_ports(timelines, k=2)
    assert busiest["in_flight"] == 3
    assert busiest["ports"] == ["a", "b"]  # the two longest, in start order
