"""Side by side with real Neutron, in one run: one 100-VM Neutron storm, then the
same storm on distributed vifwire (2 server workers, PostgreSQL + RabbitMQ, one agent).

    P=$(mktemp -d) && cp -r /work/shared/peers "$P" && "$P/peers/neutron/setup.sh"
    .venv/bin/python bench/dist_neutron.py --peers "$P/peers" [--vms 100] [--workers 2]

Neutron's harness (`neutron/run.sh N`, Debian's Neutron 21, ML2/OVS, MariaDB,
RabbitMQ, the system OVS; ports 9696 and 8774) runs first; then its services
and its system ovs-vswitchd are stopped (they keep a core busy) before
vifwire's storm, which runs on other ports (bench/distributed.py's rig); and
they stay stopped at the end. Ratios: plug -> vif-plugged p50/p99, server CPU
per VM, last event after the first create; each side's load average and the
calibration loop are recorded. Neutron's own figures for MariaDB and RabbitMQ
count the whole shared daemons (every beam.smp with "rabbit", all of mariadbd).
Results: bench/results/dist-neutron-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dist_rig import scratch_dir
from dist_storm import describe, loadavg
from storm import calibration_s

from distributed import RESULTS, distributed
from vifwire.compute.result import latency_summary

OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"


def neutron_storm(peers: Path, vms: int, log: Path) -> dict[str, Any]:
    pace, load = calibration_s(), loadavg()
    done = subprocess.run([str(peers / "neutron" / "run.sh"), str(vms)], capture_output=True,
                          text=True, timeout=900, check=False)
    log.write_text(f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    if done.returncode != 0:
        raise RuntimeError(f"neutron/run.sh failed (all of its output: {log}): "
                           f"{done.stderr.strip()[-800:]}")
    storm: dict[str, Any] = json.JSONDecoder().raw_decode(
        done.stdout[done.stdout.index("{"):])[0]
    ok = [p for p in storm["ports"] if not p.get("err") and p.get("t_event") is not None]
    n = storm["n"]
    cpu = storm["cpu_s"]
    return {
        "vms": n, "plugged": len(ok), "calibration_s": round(pace, 4), "loadavg_before": load,
        "loadavg_after": loadavg(),
        "plug_to_event_ms": latency_summary([(p["t_event"] - p["t_plug"]) * 1000 for p in ok]),
        "create_to_event_ms": latency_summary(
            [(p["t_event"] - p["t_create_start"]) * 1000 for p in ok]),
        "last_event_after_first_create_s": round(
            max(p["t_event"] for p in ok) - min(p["t_create_start"] for p in storm["ports"]), 3),
        "cpu_ms_per_vm": {k: round(v * 1000 / n, 2) for k, v in cpu.items()
                          if isinstance(v, int | float) and k != "window_s"},
        "summary_stderr": done.stderr.strip().splitlines()[-12:],
    }


def stop_neutron(peers: Path) -> None:
    subprocess.run([str(peers / "neutron" / "services.sh"), "stop"], capture_output=True,
                   check=False, timeout=120)
    subprocess.run([OVS_CTL, "stop"], capture_output=True, check=False, timeout=60)


def ratios(neutron: dict[str, Any], vifwire: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else round(a / b, 1)

    return {
        "plug_to_event_p50": ratio(neutron["plug_to_event_ms"]["p50"],
                                   vifwire["plug_to_event_ms"]["p50"]),
        "plug_to_event_p99": ratio(neutron["plug_to_event_ms"]["p99"],
                                   vifwire["plug_to_event_ms"]["p99"]),
        "server_cpu_per_vm": ratio(neutron["cpu_ms_per_vm"].get("neutron-server"),
                                   vifwire.get("cpu_ms_per_vm", {}).get("server")),
        "agent_cpu_per_vm": ratio(neutron["cpu_ms_per_vm"].get("ovs-agent"),
                                  vifwire.get("cpu_ms_per_vm", {}).get("agent")),
        "last_event_after_create": ratio(neutron["last_event_after_first_create_s"],
                                         vifwire.get("first_create_to_last_event_s")),
    }


def print_neutron(neutron: dict[str, Any]) -> None:
    lat = neutron["plug_to_event_ms"]
    print(f"Neutron 21, {neutron['plugged']}/{neutron['vms']} plugged: plug -> vif-plugged ms "
          f"p50 {lat['p50']:.0f}, p99 {lat['p99']:.0f}, max {lat['max']:.0f}; server CPU/VM "
          f"{neutron['cpu_ms_per_vm'].get('neutron-server')} ms, agent "
          f"{neutron['cpu_ms_per_vm'].get('ovs-agent')} ms, mariadb (whole) "
          f"{neutron['cpu_ms_per_vm'].get('mariadb')} ms, rabbitmq (all beam.smp) "
          f"{neutron['cpu_ms_per_vm'].get('rabbitmq')} ms; last event "
          f"{neutron['last_event_after_first_create_s']} s after the first create; load "
          f"{neutron['loadavg_before']} -> {neutron['loadavg_after']}, calibration "
          f"{neutron['calibration_s']:.3f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=Path, required=True,
                        help="a writable copy of /work/shared/peers where neutron/setup.sh ran")
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with scratch_dir("vwdistneutron-") as base:
        try:
            neutron = neutron_storm(args.peers, args.vms, base / "neutron-run.log")
        finally:
            stop_neutron(args.peers)
        print_neutron(neutron)
        vifwire = distributed(base, args.workers, 1, args.vms, 1, "10.0.0.0/22")[0]
    print(describe(f"vifwire distributed (workers {args.workers}), {args.vms} VMs", vifwire))
    found = ratios(neutron, vifwire)
    print("Neutron / vifwire distributed: " + ", ".join(
        f"{k} x{v}" for k, v in found.items()))
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": f".venv/bin/python bench/dist_neutron.py {' '.join(sys.argv[1:])}",
              "neutron": neutron, "vifwire_distributed": vifwire, "ratios_neutron_over_vifwire":
              found}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"dist-neutron-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
