"""A boot storm on a `vifwire cluster`: hosts joined by VXLAN, as issue 9 asks.

    .venv/bin/python bench/cluster_storm.py [--hosts 4] [--vms 1000] [--workers 4]
                                            [--max-concurrent-builds 10]

`bench/distributed.py multi` runs its agents without tunnel addresses, so each
host's VMs only reach each other: no br-tun, no l2population casts. This bench
starts what a user starts, `vifwire cluster up` (a private PostgreSQL and
RabbitMQ, the server workers, per host a namespace with its own OVS and an agent
with its tunnel address on the underlay), lifts the project's port quota after a
2-VM warm-up, and boots with `vifwire boot --cluster ... --json`: the VMs are
spread over the hosts and the ring of pings crosses them. It then stops the
cluster with `vifwire cluster down`.

CPU per VM is counted from the first port create to the last vif-plugged
(`CpuSampler`, bench/dist_rig.py), using the pids that cluster.json records:
- the server (the supervisor and its workers);
- the agents;
- the private RabbitMQ node's beam;
- the private PostgreSQL (the postmaster and every backend);
- the OVS daemons.

Results: bench/results/cluster-storm-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from dist_rig import CpuSampler, free_port, pids_probe
from storm import calibration_s

from vifwire.compute.result import latency_summary

HERE = Path(__file__).parent
VIFWIRE = str(Path(sys.executable).with_name("vifwire"))


def cli(run_dir: Path, *args: str) -> str:
    done = subprocess.run([VIFWIRE, "--run-dir", str(run_dir), *args], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"vifwire {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def with_children(pid: int) -> list[int]:
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def probes(state: dict[str, Any]) -> list[Any]:
    def named(*prefixes: str) -> list[int]:
        return [p["pid"] for p in state["processes"] if p["name"].startswith(prefixes)]
    return [
        pids_probe("server", lambda: [q for p in named("server") for q in with_children(p)]),
        pids_probe("agent", lambda: named("agent:")),
        pids_probe("rabbitmq (private node)",
                   lambda: [p["pid"] for p in state["processes"] if p["name"] == "rabbitmq"]),
        pids_probe("postgres (private server)",
                   lambda: [q for p in named("postgresql") for q in with_children(p)], every=5),
        pids_probe("ovs", lambda: named("ovs:")),
    ]


def lift_port_quota(api_url: str) -> None:
    networks = httpx.get(f"{api_url}/v2.0/networks", timeout=10).json()["networks"]
    for project in {n["project_id"] for n in networks}:
        httpx.put(f"{api_url}/v2.0/quotas/{project}", json={"quota": {"port": -1}},
                  timeout=10).raise_for_status()


def storm(run_dir: Path, state: dict[str, Any], vms: int, builds: int) -> dict[str, Any]:
    cluster = str(Path(state["dir"]) / "cluster.json")
    boot = ["boot", "--cluster", cluster, "--json", "--max-concurrent-builds", str(builds)]
    cli(run_dir, *boot, "--count", "2", "--no-connectivity")  # the network, pools, queues
    lift_port_quota(state["api_url"])
    pace = calibration_s()
    with CpuSampler(probes(state), interval=0.2) as cpu:
        summary = json.loads(cli(run_dir, *boot, "--count", str(vms)))
    records = [r for r in summary["records"] if not r["probe"] and r.get("t_event")]
    first = min(r["t_start"] for r in summary["records"])
    last = max(r["t_event"] for r in records)
    start, end = cpu.at(first), cpu.at(last)
    cpu_s = {k: end[k] - start[k] for k in start}
    creates = [(r["t_event"] - r["t_start"]) * 1000 for r in records]
    conn = summary["connectivity"]
    return {
        "vms": vms, "hosts": summary["hosts"], "plugged": summary["plugged"], "ok": summary["ok"],
        "error": summary["error"], "connectivity_ok": summary["connectivity_ok"],
        "cross_host_pairs": summary["cross_host_pairs"],
        "ring": {k: conn.get(k) for k in ("ring_pairs", "ring_ok", "ring_late",
                                          "ring_settled_s", "ring_failed")},
        "neighbour_limits_raised": summary.get("neighbour_limits_raised"),
        "plug_to_event_ms": summary["latency_ms"], "create_to_event_ms": latency_summary(creates),
        "first_create_to_last_event_s": round(last - first, 3),
        "cpu_ms_per_vm": {k: round(v * 1000 / vms, 2) for k, v in cpu_s.items()},
        "calibration_s": pace,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-concurrent-builds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vwcluster-") as tmp:
        run_dir = Path(tmp)
        run_dir.chmod(0o755)  # the cluster's PostgreSQL runs as postgres
        cli(run_dir, "cluster", "up", "--hosts", str(args.hosts), "--workers", str(args.workers),
            "--api-port", str(free_port()))
        try:
            (state_file,) = run_dir.glob("cluster-*/cluster.json")
            state = json.loads(state_file.read_text())
            result = storm(run_dir, state, args.vms, args.max_concurrent_builds)
        finally:
            cli(run_dir, "cluster", "down")
    lat, cpu = result["plug_to_event_ms"], result["cpu_ms_per_vm"]
    ring = result["ring"]
    print(f"cluster of {args.hosts} hosts (VXLAN), {args.workers} workers, {args.vms} VMs: "
          f"{result['plugged']} plugged {result['hosts']}, ok={result['ok']}, "
          f"cross-host pairs {result['cross_host_pairs']}, ring late {ring['ring_late']}, "
          f"failed {len(ring['ring_failed'] or [])}")
    print(f"  plug -> vif-plugged ms: p50 {lat['p50']:.1f}, p99 {lat['p99']:.1f}, "
          f"max {lat['max']:.1f}; create -> vif-plugged max "
          f"{result['create_to_event_ms']['max']:.1f} ms")
    print("  CPU ms per VM (first create -> last event, "
          f"{result['first_create_to_last_event_s']} s): "
          + ", ".join(f"{k} {v}" for k, v in cpu.items())
          + f"; calibration loop {result['calibration_s']:.3f} s")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    path = results / f"cluster-storm-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f".venv/bin/python bench/cluster_storm.py {' '.join(sys.argv[1:])}",
        **result}, indent=2) + "\n")
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
