"""profile.json against its schema, with the right numbers; terminal summary."""

from __future__ import annotations

import os
import time
from pathlib import Path

import jsonschema
import orjson
import pytest
from profile_traces import make_timelines, write_timelines
from rich.console import Console
from sqlalchemy import create_engine, text

from vifwire.profile import ResourceSampler, SqlProbe, profiled, render
from vifwire.profile.report import build_profile
from vifwire.profile.schema import PROFILE_SCHEMA
from vifwire.profile.summary import print_summary


def make_profile_dir(directory: Path, n: int = 24) -> Path:
    """A complete raw directory: traces, resources, SQL, pstats, storm summary."""
    write_timelines(directory, make_timelines(
        n, delays_ms={"wired": 80.0}, overrides={"port-011": {"up": 400.0}}))
    with profiled("server", directory):
        sampler = ResourceSampler({"stack (server+agent)": os.getpid()}, interval=0.05).start()
        engine = create_engine("sqlite://")
        probe = SqlProbe(engine)
        with engine.connect() as conn:
            for _ in range(5):
                conn.execute(text("SELECT 1")).all()
        deadline = time.process_time() + 0.3  # 0.3 s of CPU, however shared the machine
        while time.process_time() < deadline:
            pass
        sampler.stop().write(directory / "resources.json")
    probe.write(directory / f"sql-server-{os.getpid()}.json")
    (directory / "storm.json").write_bytes(orjson.dumps({"count": n, "failed": 0}))
    return directory


def test_render_writes_a_valid_profile_with_the_right_numbers(tmp_path: Path) -> None:
    profile_path, html_path = render(make_profile_dir(tmp_path))
    profile = orjson.loads(profile_path.read_bytes())
    jsonschema.validate(profile, PROFILE_SCHEMA)

    assert profile["schema"] == "vifwire-profile/1"
    assert profile["source"] == "embedded"
    assert profile["unobserved_stages"] == []
    assert len(profile["ports"]) == 24
    assert profile["transitions"]["seen->wired"]["p50"] == pytest.approx(80.0, rel=0.06)
    assert profile["dominant"]["transition"] == "seen->wired"
    assert profile["stragglers"][0]["port"] == "port-011"
    assert profile["stragglers"][0]["worst"] == "wired->up"
    assert profile["sql"]["statements"] == 5
    assert profile["sql"]["per_port"] == pytest.approx(5 / 24, abs=0.01)
    assert profile["cpu"]["vms"] == 24
    whole = profile["cpu"]["whole"]["seconds"]["stack (server+agent)"]
    assert 0.25 < whole < 1.5
    # These traces are from 2023, outside the sampled window: no storm end to cut at,
    # so the headline is the whole window and says so (test_profile_bench_agree cuts).
    stack = profile["cpu"]["seconds"]["stack (server+agent)"]
    assert stack == whole
    assert profile["cpu"]["includes"] == profile["cpu"]["whole"]["includes"]
    assert profile["cpu"]["per_vm"]["stack (server+agent)"] == pytest.approx(stack / 24, abs=1e-3)
    assert profile["cprofile"]["server"]["top"]
    assert profile["storm"] == {"count": 24, "failed": 0}
    assert html_path.read_text().startswith("<!DOCTYPE html>")


def test_render_is_repeatable(tmp_path: Path) -> None:
    make_profile_dir(tmp_path)
    first, _ = render(tmp_path)
    a = orjson.loads(first.read_bytes())
    second, _ = render(tmp_path)
    assert orjson.loads(second.read_bytes()) == a


def test_external_source_says_what_was_visible(tmp_path: Path) -> None:
    stages = ("created", "bound", "plugged", "active", "event_received")
    write_timelines(tmp_path, make_timelines(6, stages=stages),
                    component_of=dict.fromkeys(stages, "compute"))
    profile_path, html_path = render(tmp_path)
    profile = orjson.loads(profile_path.read_bytes())
    jsonschema.validate(profile, PROFILE_SCHEMA)

    assert profile["source"] == "external"
    assert profile["visible_stages"] == list(stages)
    assert profile["unobserved_stages"] == ["pushed", "seen", "wired", "up", "event_sent"]
    for port in profile["ports"].values():
        assert set(port) == set(stages)
    note = profile["visibility_note"]
    assert "only the compute side" in note and "seen, wired, up" in note
    assert profile["cpu"] is None and profile["sql"] is None
    assert "Not observable from outside" in html_path.read_text()


def test_empty_directory_still_renders(tmp_path: Path) -> None:
    profile = build_profile([])
    jsonschema.validate(profile, PROFILE_SCHEMA)
    assert profile["dominant"]["transition"] is None
    _, html_path = render(tmp_path)
    assert html_path.exists()


def test_terminal_summary_names_the_dominant_stage(tmp_path: Path) -> None:
    profile_path, _ = render(make_profile_dir(tmp_path))
    console = Console(record=True, width=140)
    print_summary(orjson.loads(profile_path.read_bytes()), console)
    out = console.export_text()
    assert "dominant stage: seen->wired" in out
    assert "port-011" in out
    assert "stack (server+agent)" in out
    assert "statement cache hit ratio" in out
    assert "p50" in out
