"""Assemble profile.json from a profile directory, and render the report.

A profile directory is a trace directory after a run (see SCHEMA.md):

    <component>-<pid>.jsonl     trace events (vifwire.trace)
    sql-<component>-<pid>.json  SqlProbe snapshots, one per server process
    resources.json              ResourceTimeline of the run (ResourceSampler)
    <component>.pstats          optional cProfile dumps (cprof.profiled)
    storm.json                  optional storm summary from `vifwire boot`

`build_profile()` is pure: it takes what was loaded and returns the document.
`render(directory)` loads the raw files, writes profile.json and report.html
next to them and returns both paths; it is what `vifwire report DIR` runs, and
it can be re-run at any time since it never modifies the raw files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from vifwire.profile import analysis, cprof
from vifwire.profile.resources import ResourceTimeline
from vifwire.profile.sql import merge_snapshots

SCHEMA_ID = "vifwire-profile/1"
CLOCK = "host wall clock (time.time()), one base for all components on a host"
PROFILE_FILE = "profile.json"
REPORT_FILE = "report.html"
RESOURCES_FILE = "resources.json"
STORM_FILE = "storm.json"
STRAGGLERS = 10


def detect_source(events: Sequence[Mapping[str, Any]]) -> str:
    """"embedded" when anything but compute traced; otherwise we drove a foreign Neutron."""
    return "embedded" if any(e.get("component") != "compute" for e in events) else "external"


def build_profile(events: Sequence[Mapping[str, Any]], *, source: str | None = None,
                  resources: ResourceTimeline | Mapping[str, Any] | None = None,
                  sql: Mapping[str, Any] | None = None,
                  cprofile: Mapping[str, Any] | None = None,
                  storm: Mapping[str, Any] | None = None,
                  stragglers: int = STRAGGLERS) -> dict[str, Any]:
    timelines = analysis.build_timelines(events)
    visible = analysis.visible_stages(timelines)
    stats = analysis.transition_stats(timelines)
    source = source or detect_source(events)
    if isinstance(resources, ResourceTimeline):
        resources = resources.to_dict()
    vms = _vm_count(storm, timelines)
    return {
        "schema": SCHEMA_ID,
        "clock": CLOCK,
        "source": source,
        "components": analysis.components(events),
        "visible_stages": visible,
        "unobserved_stages": [s for s in analysis.STAGE_ORDER if s not in visible],
        "visibility_note": _visibility_note(source, visible),
        "window": [events[0]["t"], events[-1]["t"]] if events else None,
        "ports": timelines,
        "transitions": stats,
        "dominant": analysis.dominant(timelines, stats),
        "stragglers": analysis.stragglers(timelines, stragglers),
        "busiest": analysis.busiest_ports(timelines),
        "cpu": _cpu(resources, vms, events),
        "resources": dict(resources) if resources else None,
        "sql": _sql(sql, len(timelines)),
        "cprofile": dict(cprofile or {}),
        "storm": dict(storm) if storm else None,
    }


def _visibility_note(source: str, visible: Sequence[str]) -> str:
    missing = [s for s in analysis.STAGE_ORDER if s not in visible]
    seen = ", ".join(visible) or "none"
    if source == "external":
        return (f"External Neutron: only the compute side was traced. Visible stages: {seen}. "
                f"Not observable from outside: {', '.join(missing) or 'none'}.")
    if missing:
        return f"Visible stages: {seen}. No component marked: {', '.join(missing)}."
    return "All stages were traced."


def _vm_count(storm: Mapping[str, Any] | None, timelines: analysis.Timelines) -> int:
    for key in ("count", "vms", "requested"):
        value = (storm or {}).get(key)
        if isinstance(value, int) and value > 0:
            return value
    return len(timelines)


STORM_INCLUDES = ("from the start of sampling (the storm's start) to the last "
                  "network-vif-plugged the compute side received: create, bind, wire, ACTIVE, "
                  "notify; what bench/storm.py counts as CPU per VM")
WHOLE_INCLUDES = ("the sampler's whole run: the storm and what follows it in the same "
                  "`vifwire boot` (connectivity checks, teardown: port deletes and their "
                  "network-vif-deleted posts, namespace removal)")
PROFILER_NOTE = ("sampler_cpu_s is the sampler's own CPU from its first sample to its last, "
                 "outside every component above. The SQL probe and trace marks run inside "
                 "the server and are in its figures; bench/profile_overhead.py measures "
                 "storms with and without them.")


def _last_plugged(events: Sequence[Mapping[str, Any]]) -> float | None:
    """When the last network-vif-plugged arrived (compute's mark; else the server's)."""
    for stage in (analysis.END_TO_END[1], "event_sent"):
        times = [e["t"] for e in events if e.get("stage") == stage]
        if times:
            return float(max(times))
    return None


def _cpu(resources: Mapping[str, Any] | None, vms: int,
         events: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any] | None:
    """CPU per component: the headline over the storm only (as the bench counts it),
    and the whole sampled window beside it, each with what it includes."""
    if not resources:
        return None
    timeline = ResourceTimeline.from_dict(resources) if resources.get("samples") else None
    start, end = resources.get("window") or (0.0, 0.0)
    whole = dict(resources.get("cpu_seconds") or {})
    if not whole and timeline is not None:
        whole = timeline.cpu_seconds()
    last = _last_plugged(events)
    if timeline is not None and last is not None and start < last <= end:
        storm_end, seconds, includes = last, timeline.cpu_between(start, last), STORM_INCLUDES
    else:  # no event marks the storm's end: the whole window is all there is
        storm_end, seconds, includes = end, whole, WHOLE_INCLUDES

    def per_vm(values: Mapping[str, float]) -> dict[str, float]:
        return {k: round(v / vms, 4) for k, v in values.items()} if vms else {}

    return {
        "seconds": seconds,
        "per_vm": per_vm(seconds),
        "vms": vms,
        "window": [start, storm_end],
        "window_s": round(storm_end - start, 3),
        "includes": includes,
        # The storm's end falls between two samples; its CPU there is interpolated.
        "resolution_s": resources.get("interval"),
        "whole": {"seconds": whole, "per_vm": per_vm(whole), "window": [start, end],
                  "window_s": round(end - start, 3), "includes": WHOLE_INCLUDES},
        "profiler": {"sampler_cpu_s": resources.get("sampler_cpu_s"), "note": PROFILER_NOTE},
        "ncpu": resources.get("ncpu"),
    }


def _sql(sql: Mapping[str, Any] | None, ports: int) -> dict[str, Any] | None:
    if not sql:
        return None
    out = dict(sql)
    statements = int(out.get("statements", 0))
    out["ports"] = ports
    out["per_port"] = round(statements / ports, 2) if ports else None
    if ports:
        out["build_ms_per_port"] = round(out.get("build_s", 0.0) * 1000 / ports, 3)
        out["execute_ms_per_port"] = round(out.get("execute_s", 0.0) * 1000 / ports, 3)
    return out


def load_directory(directory: Path) -> dict[str, Any]:
    """Everything `build_profile` takes, read from a profile directory."""
    sql_files = sorted(directory.glob("sql-*.json"))
    snapshots = [orjson.loads(p.read_bytes()) for p in sql_files]
    resources_path = directory / RESOURCES_FILE
    storm_path = directory / STORM_FILE
    return {
        "events": analysis.load_events(directory),
        "sql": merge_snapshots(snapshots) if snapshots else None,
        "resources": orjson.loads(resources_path.read_bytes()) if resources_path.exists()
        else None,
        "storm": orjson.loads(storm_path.read_bytes()) if storm_path.exists() else None,
        "cprofile": cprof.summarize_dir(directory),
    }


def write_profile(profile: Mapping[str, Any], directory: Path) -> Path:
    path = directory / PROFILE_FILE
    path.write_bytes(orjson.dumps(profile, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return path


def render(directory: Path, *, source: str | None = None,
           storm: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """(profile.json, report.html) re-rendered from the raw files in `directory`."""
    from vifwire.profile.html import render_html

    raw = load_directory(directory)
    profile = build_profile(raw["events"], source=source, resources=raw["resources"],
                            sql=raw["sql"], cprofile=raw["cprofile"],
                            storm=storm or raw["storm"])
    profile_path = write_profile(profile, directory)
    html_path = directory / REPORT_FILE
    html_path.write_text(render_html(profile), encoding="utf-8")
    return profile_path, html_path
