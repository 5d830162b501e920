"""Security groups benchmark (issue 10): the boot storm with port security on and off.

    .venv/bin/python bench/secgroups.py [--vms 100] [--repeats 3]
                                        [--neutron-result FILE | --run-neutron]

Starts a private OVS in its own network namespace and the embedded stack as a
separate process (as bench/storm.py, on its own run dir, API port and namespace,
so it runs beside that bench), a 2-VM warm-up, then per repeat:

  1. a storm of `--vms` VMs at once on a network with port security ON, every VM
     in the project's default group (so each new VM changes every other VM's
     remote-group members): plug -> network-vif-plugged p50/p99/max (target p99
     <= 100 ms), server and agent CPU per VM (by thread, to the last event), and
     the outsider check of `boot --port-security` (members reach each other, a VM
     of another group is refused);
  2. while its VMs are still wired (the storm's after_boot hook): OpenFlow flows
     per port on br-int, and the time to apply one rule change to all of them: a
     rule added to the default group (ingress tcp/22) and then deleted, each
     timed from the API call to (a) its answer, which the server sends after it
     committed and cast `firewall_changed` to the agents, and (b) the flows
     showing the change on br-int (flows matching tp_dst=22 appear / are gone);
     (b) stays null when the agent does not write firewall flows;
  3. the same storm on a network with port security OFF, for comparison.

`--neutron-result FILE` reads a result of the real-Neutron harness
(`../shared/peers/neutron/run.sh 100 --port-security`, JSON on its stdout and in
its results/), `--run-neutron` runs that harness from a writable copy of
/work/shared/peers (heavy: minutes, and it starts MariaDB, RabbitMQ, Neutron),
and either puts its figures side by side. Results:
bench/results/secgroups-<UTC time>.json; every figure is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from storm import calibration_s, cpu_split, start_private_switch

from vifwire.cli import daemon
from vifwire.compute.result import latency_summary
from vifwire.compute.storm import Storm, StormConfig, run_storm
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import Settings

RESULTS = Path(__file__).parent / "results"
NETNS = "vwbench-fw"
PEERS = Path("/work/shared/peers")
TARGET_P99_MS = 100.0
RULE = {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
        "remote_ip_prefix": "0.0.0.0/0"}
MARKER = "tp_dst=22"  # what the rule's flows match on


def bench_settings() -> Settings:
    return Settings(run_dir=Path("/var/run/vifwire-bench-fw"), host="bench-fw", api_port=9796,
                    nova_url="http://127.0.0.1:8779/v2.1")


def flows(runtime: OvsRuntime, bridge: str) -> list[str]:
    out = runtime.ofctl("dump-flows", bridge, "--no-stats")
    return [line for line in out.splitlines() if line.strip() and "NXST_FLOW" not in line
            and "OFPST_FLOW" not in line]


async def _until(predicate: Any, timeout: float = 30.0) -> float | None:
    """Seconds until `predicate()` held (polled), None if it never did."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if await asyncio.to_thread(predicate):
            return time.perf_counter() - started
        await asyncio.sleep(0.005)
    return None


async def rule_change(settings: Settings, runtime: OvsRuntime, storm: Storm,
                      ports: int) -> dict[str, Any]:
    """Add then delete one rule of the default group: API answer and flows, each."""
    bridge = settings.ovs.integration_bridge

    def marked() -> int:
        return sum(MARKER in line for line in flows(runtime, bridge))

    async with httpx.AsyncClient(base_url=settings.api_url, timeout=60) as client:
        port = (await client.get(f"/v2.0/ports/{storm.result.vms[0].port_id}")).json()["port"]
        group_id = port["security_groups"][0]
        t0 = time.perf_counter()
        response = await client.post("/v2.0/security-group-rules", json={
            "security_group_rule": {"security_group_id": group_id, **RULE}})
        added_ms = (time.perf_counter() - t0) * 1000
        response.raise_for_status()
        rule_id = response.json()["security_group_rule"]["id"]
        appeared = await _until(lambda: marked() > 0, timeout=10)
        flows_with_rule = marked()
        t1 = time.perf_counter()
        (await client.delete(f"/v2.0/security-group-rules/{rule_id}")).raise_for_status()
        deleted_ms = (time.perf_counter() - t1) * 1000
        gone = await _until(lambda: marked() == 0, timeout=10) if appeared is not None else None
    return {"ports": ports, "add_api_ms": added_ms, "delete_api_ms": deleted_ms,
            "add_to_flows_ms": None if appeared is None else added_ms + appeared * 1000,
            "delete_to_flows_ms": None if gone is None else deleted_ms + gone * 1000,
            "flows_matching_rule": flows_with_rule,
            "note": None if appeared is not None else
            "no flow for the rule appeared on br-int: the agent does not enforce groups on this "
            "build; the API answer comes after the commit and the firewall_changed cast"}


async def storm(settings: Settings, runtime: OvsRuntime, stack: psutil.Process, vms: int,
                port_security: bool) -> dict[str, Any]:
    pace = calibration_s()
    marks: dict[str, Any] = {}
    extra: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "events" and done == total:  # the per-VM budget ends here
            marks["split"] = cpu_split(stack)

    async def after_boot(booted: Storm) -> None:
        wired = sum(r.plugged for r in booted.result.vms)
        found = flows(runtime, settings.ovs.integration_bridge)
        extra["flows"] = {"total": len(found), "ports": wired,
                          "per_port": len(found) / wired if wired else None}
        if port_security:
            extra["rule_change"] = await rule_change(settings, runtime, booted, wired)

    config = StormConfig(
        neutron_url=settings.api_url, network="bench-secured" if port_security else "bench-open",
        count=vms, host=settings.host, ovs=settings.ovs, run_dir=settings.run_dir,
        nova_url=settings.nova_url, check_connectivity=True, ensure_network=True,
        host_netns=NETNS, timeout=120, progress=progress, after_boot=after_boot,
        port_security=port_security)
    before = cpu_split(stack)
    started = time.monotonic()
    result = (await run_storm(config)).to_dict()
    after = marks.get("split", cpu_split(stack))
    server_s, agent_s = (a - b for a, b in zip(after, before, strict=True))
    return {"vms": vms, "port_security": port_security, "plugged": result["plugged"],
            "latency_ms": result["latency_ms"],
            "latencies_ms": [r["latency_ms"] for r in result["records"]
                             if not r["probe"] and r["latency_ms"] is not None],
            "server_cpu_per_vm_ms": server_s * 1000 / vms,
            "agent_cpu_per_vm_ms": agent_s * 1000 / vms,
            "connectivity_ok": result["connectivity_ok"], "secured": result["port_security"],
            "wall_s": time.monotonic() - started, "calibration_s": pace,
            "failures": result["failures"][:5], **extra}


async def run(vms: int, repeats: int) -> list[dict[str, Any]]:
    settings = bench_settings()
    runtime = start_private_switch(settings, NETNS)
    try:
        stack = psutil.Process(daemon.start(settings))
        await storm(settings, runtime, stack, 2, port_security=True)  # warm-up
        storms = []
        for _ in range(repeats):
            storms.append(await storm(settings, runtime, stack, vms, port_security=True))
            storms.append(await storm(settings, runtime, stack, vms, port_security=False))
    finally:
        daemon.stop(settings)
        runtime.destroy()
        subprocess.run(["ip", "netns", "del", NETNS], check=False, capture_output=True)
    return storms


def pooled(storms: list[dict[str, Any]], port_security: bool) -> dict[str, Any]:
    runs = [s for s in storms if s["port_security"] is port_security]
    median = statistics.median
    out: dict[str, Any] = {
        "storms": len(runs), "vms": sum(s["vms"] for s in runs),
        "plugged": sum(s["plugged"] for s in runs),
        "latency_ms": latency_summary([ms for s in runs for ms in s["latencies_ms"]]),
        "server_cpu_per_vm_ms": median(s["server_cpu_per_vm_ms"] for s in runs),
        "agent_cpu_per_vm_ms": median(s["agent_cpu_per_vm_ms"] for s in runs),
        "flows_per_port": median(s["flows"]["per_port"] or 0 for s in runs),
        "connectivity_ok": all(s["connectivity_ok"] for s in runs)}
    if port_security:
        out["members_ok"] = all(s["secured"]["members_ok"] for s in runs)
        out["outsider_refused"] = all(s["secured"]["outsider_refused"] for s in runs)
        changes = [s["rule_change"] for s in runs]
        for key in ("add_api_ms", "delete_api_ms", "add_to_flows_ms", "delete_to_flows_ms"):
            values = [c[key] for c in changes if c[key] is not None]
            out[f"rule_{key}"] = median(values) if values else None
        out["rule_change_note"] = next((c["note"] for c in changes if c["note"]), None)
    return out


def neutron_figures(data: dict[str, Any]) -> dict[str, Any]:
    """The harness's JSON (seconds) as this bench's figures (ms)."""
    latency = data.get("latency_plug_to_event_s") or {}
    cpu = data.get("cpu_s") or {}
    n = data.get("n") or 1
    return {"vms": data.get("n"), "plugged": data.get("ports_ok"), "label": data.get("label"),
            "port_security": (data.get("network") or {}).get("port_security_enabled"),
            "latency_ms": {k: latency[k] * 1000 for k in ("min", "p50", "p90", "max", "mean")
                           if latency.get(k) is not None},
            "server_cpu_per_vm_ms": cpu.get("neutron-server", 0) * 1000 / n,
            "agent_cpu_per_vm_ms": (cpu.get("ovs-agent", 0) + cpu.get("ovs-agent-helpers", 0))
            * 1000 / n}


def run_neutron(vms: int) -> dict[str, Any]:
    """The real-Neutron storm, from a writable copy of the peers (its README)."""
    copy = Path(tempfile.mkdtemp(prefix="vw-peers-"))
    shutil.copytree(PEERS, copy / "peers")
    harness = copy / "peers" / "neutron"
    subprocess.run(["./setup.sh"], cwd=harness, check=True)
    out = subprocess.run(["./run.sh", str(vms), "--port-security"], cwd=harness, check=True,
                         capture_output=True, text=True).stdout
    data: dict[str, Any] = json.loads(out[out.index("{"):])
    data["_copy"] = str(harness)
    return data


def show(name: str, p: dict[str, Any]) -> None:
    latency = ", ".join(f"{k} {v:.1f}" for k, v in p["latency_ms"].items() if v is not None)
    print(f"{name}: plugged {p.get('plugged', p.get('vms'))}/{p['vms']}, plug -> vif-plugged "
          f"ms {latency}; CPU/VM server {p['server_cpu_per_vm_ms']:.1f} ms, agent "
          f"{p['agent_cpu_per_vm_ms']:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    side = parser.add_mutually_exclusive_group()
    side.add_argument("--neutron-result", type=Path,
                      help="a JSON of ../shared/peers/neutron/run.sh N --port-security")
    side.add_argument("--run-neutron", action="store_true",
                      help="run that harness from a writable copy (heavy)")
    args = parser.parse_args()
    storms = asyncio.run(run(args.vms, args.repeats))
    secured, open_ = pooled(storms, True), pooled(storms, False)
    neutron = None
    if args.neutron_result:
        neutron = neutron_figures(json.loads(args.neutron_result.read_text()))
    elif args.run_neutron:
        neutron = neutron_figures(run_neutron(args.vms))
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": ".venv/bin/python bench/secgroups.py " + " ".join(sys.argv[1:]),
              "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version(),
                          "kernel": platform.release(), "loadavg": list(psutil.getloadavg())},
              "target_p99_ms": TARGET_P99_MS, "port_security_on": secured,
              "port_security_off": open_, "neutron": neutron, "storms": storms}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"secgroups-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")

    show(f"port security ON  ({secured['storms']} x {args.vms} VMs)", secured)
    show(f"port security OFF ({open_['storms']} x {args.vms} VMs)", open_)
    p99 = secured["latency_ms"]["p99"]
    shown = "n/a" if p99 is None else f"{p99:.1f}"
    print(f"p99 with port security {shown} ms, target {TARGET_P99_MS:.0f} ms: "
          f"{'ok' if p99 is not None and p99 <= TARGET_P99_MS else 'MISSED'}")
    print(f"members reach each other: {secured['members_ok']}; a VM of another group "
          f"refused: {secured['outsider_refused']}")
    print(f"OpenFlow flows per port on br-int: {secured['flows_per_port']:.1f} with port "
          f"security, {open_['flows_per_port']:.1f} without")
    print(f"one rule change to {args.vms} ports: add {secured['rule_add_api_ms']:.1f} ms, "
          f"delete {secured['rule_delete_api_ms']:.1f} ms to the API's answer (after commit "
          f"and cast); to the flows: add {secured['rule_add_to_flows_ms']} ms, delete "
          f"{secured['rule_delete_to_flows_ms']} ms")
    if secured["rule_change_note"]:
        print(f"  note: {secured['rule_change_note']}")
    print(f"agent CPU per VM: {secured['agent_cpu_per_vm_ms']:.1f} ms in the default group, "
          f"{open_['agent_cpu_per_vm_ms']:.1f} ms without port security")
    if neutron is not None:
        show(f"real Neutron ({neutron['label']}, port security "
             f"{neutron['port_security']})", neutron)
    print(f"results written to {path} (machine shared: figures are indicative)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
