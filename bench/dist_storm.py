"""One measured storm: `vifwire boot --json` processes at once, CPU per component.

`run_storm(rig, boots, probes)` starts every boot (one per simulated host, all
at once), samples the components' CPU meanwhile, and returns per-VM latencies
pooled over every boot: plug -> network-vif-plugged and create -> vif-plugged
(the boot's own stamps: `t_start` before the port create, `t_plug` before the
OVSDB plug, `t_event` at Nova's receipt), and each component's CPU from the
first port create to the last network-vif-plugged, per VM. With the machine's
load average and the calibration loop (bench/storm.py's) next to the figures.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dist_rig import CpuSampler, Host, Probe, Rig, machine_probe, parse_boot, pids_probe
from storm import calibration_s

from vifwire.compute.result import latency_summary
from vifwire.profile import analysis
from vifwire.trace import WIRING_STEPS, Stage

RIG_PROBE = "rig: vifwire boot (emulated Nova + os-vif, its VMs and pings)"
MACHINE_PROBE = "machine (every process and the kernel, /proc/stat)"


@dataclass(frozen=True)
class Boot:
    host: Host
    count: int
    nova_url: str  # the Nova endpoint this boot process runs


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_storm(rig: Rig, boots: list[Boot], probes: list[Probe], *, network: str,
              external: bool, connectivity: bool = True,
              max_concurrent_builds: int = 0) -> dict[str, Any]:
    pace = calibration_s()
    load_before = loadavg()
    boot_pids: list[int] = []
    # The rig's own share of the machine: the emulated Nova + os-vif and its VMs
    # (namespaces, veths, pings) run on the same cores as everything they measure.
    rig_probes = [pids_probe(RIG_PROBE, lambda: boot_pids, children=True),
                  machine_probe(MACHINE_PROBE)]
    with CpuSampler([*probes, *rig_probes]) as sampler:
        started = time.monotonic()
        procs = [subprocess.Popen(rig.boot_cmd(b.host, b.count, b.nova_url, network,
                                               connectivity, external, max_concurrent_builds),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, **rig.trace_env()})
                 for b in boots]
        boot_pids.extend(p.pid for p in procs)
        outputs = [p.communicate() for p in procs]
        wall = time.monotonic() - started
    summaries = [parse_boot(out, err) for out, err in outputs]
    records = [r for s in summaries for r in s["records"] if not r.get("probe")]
    plugged = [r for r in records if r.get("t_event") and not r.get("error")]
    latencies = [r["latency_ms"] for r in plugged if r.get("latency_ms") is not None]
    create_to_event = [(r["t_event"] - r["t_start"]) * 1000 for r in plugged]
    vms = sum(b.count for b in boots)
    # Where each VM's time went, by the boot's own stamps (ms, over plugged VMs).
    stages = {name: latency_summary([(r[b] - r[a]) * 1000 for r in plugged])
              for name, a, b in (("create", "t_start", "t_port"), ("bind", "t_port", "t_bound"),
                                 ("vm", "t_bound", "t_vm"), ("plug", "t_vm", "t_plug"))}
    result: dict[str, Any] = {
        "vms": vms, "hosts": {b.host.name: b.count for b in boots},
        "max_concurrent_builds_per_host": max_concurrent_builds or None,
        "plugged": len(plugged), "ok": all(s.get("ok") for s in summaries),
        "errors": [s.get("error") for s in summaries if s.get("error")],
        "connectivity_ok": all(s.get("connectivity_ok") for s in summaries)
        if connectivity else None,
        "cross_host_pairs": sum(s.get("cross_host_pairs") or 0 for s in summaries),
        # Per boot, what its ping check found (the first failed pairs only): enough to
        # tell a lost ping under load from a wiring fault.
        "connectivity": [{**(s.get("connectivity") or {}),
                          "ring_failed": (s.get("connectivity") or {}).get("ring_failed", [])[:5]}
                         for s in summaries] if connectivity else None,
        "plug_to_event_ms": latency_summary(latencies),
        "create_to_event_ms": latency_summary(create_to_event),
        "stages_ms": stages,
        "wall_s": round(wall, 2), "calibration_s": round(pace, 4),
        "loadavg_before": load_before, "loadavg_after": loadavg(),
    }
    if plugged:
        t0 = min(r["t_start"] for r in records)
        t1 = max(r["t_event"] for r in plugged)
        cpu = sampler.between(t0, t1)
        result["first_create_to_last_event_s"] = round(t1 - t0, 3)
        result["cpu_s_to_last_event"] = {k: round(v, 3) for k, v in cpu.items()}
        result["cpu_ms_per_vm"] = {k: round(v * 1000 / vms, 2) for k, v in cpu.items()}
        # How full the machine was: busy CPUs, averaged over the same window.
        result["machine_busy_cpus"] = round(cpu[MACHINE_PROBE] / max(t1 - t0, 1e-6), 2)
        result["machine_cpus"] = os.cpu_count()
        whole = sampler.between(sampler.samples[0][0], sampler.samples[-1][0])
        result["cpu_s_whole_run"] = {k: round(v, 3) for k, v in whole.items()}
    result["latencies_ms"] = sorted(round(x, 2) for x in latencies)
    if rig.trace_dir is not None:  # for the stage split, once every process has stopped
        result["port_ids"] = [r["port_id"] for r in plugged]
    return result


def stage_split(trace_dir: Path, port_ids: list[str]) -> dict[str, Any]:
    """Where the storm's ports spent plug -> vif-plugged, stage by stage (ms), from the
    marks every process wrote (vifwire.profile.analysis): who held the p99."""
    wanted = set(port_ids)
    events = analysis.load_events(trace_dir)
    timelines = {port: stages for port, stages in analysis.build_timelines(events).items()
                 if port in wanted}
    stats = analysis.transition_stats(timelines)
    return {"ports_traced": len(timelines), "transitions_ms": stats,
            "dominant": analysis.dominant(timelines, stats),
            "seen_to_wired_steps_ms": wiring_steps(events, timelines)}


def wiring_steps(events: list[dict[str, Any]],
                 timelines: dict[str, dict[str, float]]) -> dict[str, Any]:
    """seen -> wired split by the agent's waits (vifwire.trace.WIRING_STEPS, the
    `steps` of its WIRED marks): seen -> numbered (vswitchd gave the VIF its
    ofport), -> members (the remote groups were held), -> filtered (the firewall
    bundle was written), -> wired (the tag was written)."""
    split = {str(e["port"]): {Stage.SEEN: timelines[str(e["port"])][Stage.SEEN],
                              **e["steps"], Stage.WIRED: e["t"]}
             for e in events if e["stage"] == Stage.WIRED and e.get("steps")
             and Stage.SEEN in timelines.get(str(e["port"]), {})}
    names = [Stage.SEEN, *WIRING_STEPS, Stage.WIRED]
    return {analysis.transition_key(a, b): analysis.summarize(
                analysis.durations_ms(split, a, b).values())
            for a, b in itertools.pairwise(names)}


def describe(label: str, s: dict[str, Any]) -> str:
    """Every figure of one storm on a few lines."""
    lat, c2e = s["plug_to_event_ms"], s["create_to_event_ms"]

    def ms(d: dict[str, Any], k: str) -> str:
        return "n/a" if d.get(k) is None else f"{d[k]:.1f}"

    lines = [f"{label}: {s['plugged']}/{s['vms']} plugged on {len(s['hosts'])} host(s), "
             f"ok={s['ok']}, connectivity_ok={s['connectivity_ok']}, wall {s['wall_s']} s",
             f"  plug -> vif-plugged ms: p50 {ms(lat, 'p50')}, p99 {ms(lat, 'p99')}, "
             f"max {ms(lat, 'max')};  create -> vif-plugged ms: p50 {ms(c2e, 'p50')}, "
             f"max {ms(c2e, 'max')}"]
    lines.append("  stages ms (p50/max): " + ", ".join(
        f"{k} {ms(v, 'p50')}/{ms(v, 'max')}" for k, v in s["stages_ms"].items()))
    if "cpu_ms_per_vm" in s:
        per_vm = ", ".join(f"{k} {v:.2f}" for k, v in s["cpu_ms_per_vm"].items())
        lines.append(f"  CPU ms per VM (first create -> last event, "
                     f"{s['first_create_to_last_event_s']} s): {per_vm}")
        if "machine_busy_cpus" in s:
            lines.append(f"  machine: {s['machine_busy_cpus']} of {s['machine_cpus']} CPUs busy "
                         f"on average over that window")
    lines.append(f"  load average {s['loadavg_before']} -> {s['loadavg_after']}, "
                 f"calibration loop {s['calibration_s']:.3f} s")
    split = s.get("stage_split")
    if split:
        def spans(stats: dict[str, Any]) -> str:
            return ", ".join(f"{k} {ms(v, 'p50')}/{ms(v, 'p99')}/{ms(v, 'max')}"
                             for k, v in stats.items())
        lines.append(f"  where plug -> vif-plugged went ({split['ports_traced']} ports traced, "
                     f"ms p50/p99/max): {spans(split['transitions_ms'])}")
        lines.append("  seen -> wired by the agent's waits (ms p50/p99/max): "
                     + spans(split.get("seen_to_wired_steps_ms", {})))
    for error in s["errors"]:
        lines.append(f"  error: {str(error)[:300]}")
    return "\n".join(lines)
