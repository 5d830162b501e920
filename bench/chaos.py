"""Chaos benchmark: boot storms while a part of the stack is SIGKILLed, and what survives.

    .venv/bin/python bench/chaos.py [--vms 20] [--repeats 5] [--faults stack,ovsdb-server,...]

Starts its own `vifwire up` (private run dir, OVS in its own network namespace,
free ports), boots two kept VMs that ping each other for the whole run, then for
every fault kind, `--repeats` times: a storm of `--vms` VMs, a SIGKILL of the
fault's process at a random moment of the storm's boot phase, `vifwire up` at
once to recover (as an operator or systemd would), and the figures (issue 12):

* every port ends ACTIVE (polled for up to `--recover-timeout` s after the boot);
* `network-vif-plugged` per port and transition: one per DOWN -> ACTIVE. For a
  storm port, expected = 1 + its unplugged events up to the checks; for a kept
  port (ACTIVE all along), expected = its unplugged events. Duplicates = more
  acted on (counted up to the storm's end, `--settle` s after recovery at
  least), losses = fewer; repeats = the events the emulator's Nova received
  again for a transition it had acted on (the notifier re-posts after a
  SIGKILL, `X-Vifwire-Event-Revisions` names the transition), answered and not
  acted on: reported next to the duplicates, not in them;
* orphans after the storm's teardown: VM namespaces, OVS ports, Neutron ports
  (the kept pair excepted);
* duplicate IPs among the network's ports before teardown;
* isolation after recovery: the dead-VLAN drop flow is in br-int, and the storm's
  probe VM on a second network with the same CIDR is unreachable from VM 0;
* time to recover: SIGKILL -> the part back (`vifwire up` done, the agent or
  broker started again, the worker restarted), and SIGKILL -> every port ACTIVE;
  the SIGKILL comes once k VMs (k < VMs, random) passed a random stage of their
  boot (port created, bound, VM made, plugged, vif-plugged received), plus up to
  `--kill-window` s, so it lands anywhere in the boot phase; the table counts
  the trials killed before the storm's last event;
* pings lost by the kept pair's continuous ping (-i 0.05) during the trial.

Fault kinds are pluggable (`FAULTS`). `stack`, `ovsdb-server` and `ovs-vswitchd`
run on the embedded stack (`vifwire up`). `agent`, `server-worker` and `rabbitmq`
run on the distributed stack of tests/distributed (`Cluster`): a PostgreSQL
database of its own in the shared server (dropped after), a private RabbitMQ
node, `vifwire server --workers N` (`--workers`, default 2) and `vifwire agent`
with its private OVS in a namespace. Their recovery is what an operator or
systemd does: the agent is started again; a worker is restarted by its
supervisor (recovered once it is logged and all workers are back); the broker
node is started again on its own files (the server and the agent reconnect
themselves). A pings-lost figure of 0 is the target for an agent restart: the
agent must not touch the VMs' flows while it resyncs.
Writes bench/results/chaos-<UTC time>.json and prints one table per fault.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos_parts import (  # type: ignore[import-not-found]
    FAULTS,
    NETWORK,
    VIF_UNPLUGGED,
    Bench,
    ContinuousPing,
    Fault,
    boot_kept_pair,
    free_port,
    remove_kept_pair,
    start_cluster,
)

from vifwire.compute.neutron import NeutronClient
from vifwire.compute.nova_events import VIF_PLUGGED
from vifwire.compute.storm import Storm, StormConfig, run_storm
from vifwire.compute.vm import list_namespaces
from vifwire.nova_token import ensure_token
from vifwire.settings import Settings

RESULTS = Path(__file__).parent / "results"
KILL_STAGES = ("ports", "bound", "vms", "plugged", "events")


# one trial


async def wait_active(neutron: NeutronClient, port_ids: list[str], timeout: float) -> int:
    """Poll until every port is ACTIVE or `timeout`; returns how many are."""
    deadline = time.monotonic() + timeout
    active = 0
    while True:
        statuses: dict[str, str] = {}
        for start in range(0, len(port_ids), 50):
            with contextlib.suppress(Exception):
                for port in await neutron.list_ports(id=port_ids[start:start + 50],
                                                     fields=["id", "status"]):
                    statuses[port["id"]] = port["status"]
        active = sum(1 for p in port_ids if statuses.get(p) == "ACTIVE")
        if active == len(port_ids) or time.monotonic() > deadline:
            return active
        await asyncio.sleep(0.2)


async def wait_outbox_empty(bench: Bench, timeout: float) -> bool:
    """Distributed mode: wait until the shared outbox is empty, so a row a dead
    worker left (posted by another's orphan check after ORPHAN_CHECK_S) is counted."""
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(bench.cluster.outbox_rows):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


def event_figures(counts: Counter[tuple[str, str]], unplugged_counts: Counter[tuple[str, str]],
                  storm_ports: list[str], kept_ports: list[str],
                  repeats: Counter[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Duplicates and losses of network-vif-plugged, per port and transition.

    `counts` holds every event acted on up to the storm's end; `unplugged_counts`
    the unplugged ones up to the checks (later ones are the teardown's, no
    transition a plugged event must follow). `repeats`: the plugged events the
    emulator's Nova received again for a transition it had acted on (a post
    repeated after a SIGKILL), answered but not acted on: reported, not
    duplicates."""
    repeats = repeats or Counter()
    duplicates = losses = repeated = 0
    per_port: dict[str, dict[str, int]] = {}
    for port in storm_ports + kept_ports:
        plugged, unplugged = counts[(VIF_PLUGGED, port)], unplugged_counts[(VIF_UNPLUGGED, port)]
        expected = unplugged + (1 if port in storm_ports else 0)
        duplicates += max(0, plugged - expected)
        losses += max(0, expected - plugged)
        repeated += repeats[(VIF_PLUGGED, port)]
        if plugged != expected or unplugged:
            per_port[port] = {"plugged": plugged, "unplugged": unplugged, "expected": expected}
    return {"duplicates": duplicates, "losses": losses, "repeats": repeated,
            "irregular_ports": per_port}


async def trial(bench: Bench, fault: Fault, vms: int, recover_timeout: float,
                kill_window_s: float, settle_s: float) -> dict[str, Any]:
    s = bench.settings
    kept_ports = [k["port_id"] for k in bench.kept]
    out: dict[str, Any] = {"fault": fault.name, "vms": vms}
    storms: list[Storm] = []
    kill: dict[str, Any] = {}
    progress: Counter[str] = Counter()
    unplugged_at_check: Counter[tuple[str, str]] = Counter()

    # A random point of the boot phase: once `mark` VMs passed a random stage (port
    # created, bound, VM made, plugged, vif-plugged received), mark < VMs so some
    # VM is still short of it, plus up to kill_window_s.
    stage, mark = random.choice(KILL_STAGES), random.randint(1, max(1, vms - 1))
    reached = asyncio.Event()

    def on_progress(passed: str, done: int, total: int) -> None:
        progress.update([passed])
        if passed == stage and done >= mark:
            reached.set()

    async def inject() -> None:
        await reached.wait()  # or the boot ended (after_boot sets it)
        await asyncio.sleep(random.uniform(0.0, kill_window_s))
        kill["stage"], kill["mark"] = stage, mark
        pid = fault.pid(bench)
        if pid is None:
            kill["error"] = f"no {fault.name} process to kill"
            return
        kill["ports_created_before"] = progress["ports"]
        kill["wired_before"] = progress["events"]
        kill["t"] = time.time()
        await fault.kill(bench, pid)
        code, text = await fault.recover(bench, pid)
        kill["up_s"] = round(time.time() - kill["t"], 3)
        kill["up_rc"] = code
        if code != 0:
            kill["up_output"] = text

    async def after_boot(storm: Storm) -> None:
        storms.append(storm)
        reached.set()  # the chosen point never came (a VM failed): kill now
        await injector  # recovery has begun (or finished) before we judge
        ports = [r.port_id for r in storm.result.vms if r.port_id]
        t0 = time.monotonic()
        out["active"] = await wait_active(storm.neutron, ports, recover_timeout)
        if "t" in kill:
            out["recover_s"] = round(max(time.time() - kill["t"], 0.0), 3)
        out["active_wait_s"] = round(time.monotonic() - t0, 3)
        ips = Counter(f["ip_address"] for p in await storm.neutron.list_ports(
            network_id=storm.target.id) for f in p.get("fixed_ips", []))
        out["duplicate_ips"] = sum(n - 1 for n in ips.values() if n > 1)
        out["dead_vlan_drop_flow"] = bench.dead_vlan_drop_present()
        if bench.cluster is not None:  # every event settled: none can be posted again
            out["outbox_empty"] = await wait_outbox_empty(bench, recover_timeout)
        await asyncio.sleep(settle_s)  # late duplicates (an outbox replayed on restart)
        # Unplugged events from here on are the teardown's; plugged ones still count.
        unplugged_at_check.update({k: v for k, v in storm.book.counts.items()
                                   if k[0] == VIF_UNPLUGGED})

    config = StormConfig(
        neutron_url=s.api_url, network=NETWORK, count=vms, host=s.host, ovs=s.ovs,
        run_dir=s.run_dir, nova_url=s.nova_url, timeout=recover_timeout + 60,
        ns_prefix=bench.ns_prefix, host_netns=s.ovs_netns,
        extra_servers=tuple(k["vm_uuid"] for k in bench.kept), after_boot=after_boot,
        progress=on_progress)
    ping = ContinuousPing(bench)
    await ping.start()
    injector = asyncio.create_task(inject(), name="chaos:inject")
    t_start = time.time()
    try:
        result = await run_storm(config)
    finally:
        with contextlib.suppress(Exception):
            await injector
        out["ping"] = await ping.stop()
    summary = result.to_dict()
    storm_ports = [r.port_id for r in result.vms if r.port_id]
    out.update({
        "kill": {**{k: v for k, v in kill.items() if k != "t"},
                 **({"at": round(kill["t"], 3)} if "t" in kill else {})},
        "killed_after_s": round(kill["t"] - t_start, 3) if "t" in kill else None,
        "wired": summary["plugged"], "failures": summary["failures"][:5],
        "storm_error": summary["error"], "neutron_retries": summary["neutron_retries"],
        "isolation_ok": summary["connectivity"]["isolation_ok"],
        "ring_ok": f"{summary['connectivity']['ring_ok']}/{summary['connectivity']['ring_pairs']}",
        "events": event_figures(storms[0].book.counts if storms else Counter(),
                                unplugged_at_check, storm_ports, kept_ports,
                                storms[0].book.repeats if storms else Counter()),
        "teardown_errors": summary["teardown_errors"][:5],
    })
    kept_ns = {k["vm"].namespace for k in bench.kept}
    kept_taps = {k["vm"].tap for k in bench.kept}
    async with NeutronClient(s.api_url) as neutron:
        ports = await neutron.list_ports(device_owner="compute:nova")
    out["orphans"] = {
        "namespaces": len(set(list_namespaces(bench.ns_prefix)) - kept_ns),
        "ovs_ports": len({p for p in bench.bridge_ports() if p.startswith("tap")} - kept_taps),
        "neutron_ports": len({p["id"] for p in ports} - set(kept_ports)),
    }
    return out


# the run


async def run_trials(bench: Bench, names: list[str], args: argparse.Namespace,
                     results: dict[str, Any]) -> None:
    """The kept pair, then `--repeats` trials of each fault on `bench`'s stack."""
    try:
        await boot_kept_pair(bench)
        results.setdefault("kept_first_ping_s", []).append(bench.kept_first_ping_s)
        print(f"kept pair: first reply {bench.kept_first_ping_s} s after both "
              "vif-plugged events", flush=True)
        for name in names:
            fault = FAULTS[name]
            reason = fault.unavailable(bench)
            if reason:
                results["skipped"][name] = reason
                print(f"{name}: {reason}", flush=True)
                continue
            for i in range(args.repeats):
                figures = await trial(bench, fault, args.vms, args.recover_timeout,
                                      args.kill_window, args.settle)
                results["trials"].append(figures)
                print(f"{name} #{i + 1}: wired {figures['wired']}/{args.vms}, active "
                      f"{figures.get('active')}, dup {figures['events']['duplicates']} "
                      f"(repeats {figures['events']['repeats']}), lost "
                      f"{figures['events']['losses']}, pings lost {figures['ping']['lost']}, "
                      f"kill -> all ACTIVE {figures.get('recover_s')} s", flush=True)
    finally:
        with contextlib.suppress(Exception):
            await remove_kept_pair(bench)


async def run_embedded(names: list[str], args: argparse.Namespace,
                       results: dict[str, Any]) -> None:
    """`vifwire up` with a private run dir, OVS in its own namespace, free ports."""
    run_id = uuid.uuid4().hex[:6]
    run_dir = Path(tempfile.mkdtemp(prefix=f"vifwire-chaos-{run_id}-"))
    netns = f"vwchaos{run_id}"
    settings = Settings(run_dir=run_dir, host=f"chaos-{run_id}", api_port=free_port(),
                        nova_url=f"http://127.0.0.1:{free_port()}/v2.1", ovs_netns=netns)
    options = ["--run-dir", str(run_dir), "--host", settings.host,
               "--api-port", str(settings.api_port), "--nova-url", settings.nova_url,
               "--ovs-netns", netns]
    bench = Bench(settings, run_id, options)
    ensure_token(run_dir)
    try:
        up = bench.cli("up")
        if up.returncode != 0:
            raise SystemExit(f"vifwire up failed: {up.stdout}{up.stderr}")
        await run_trials(bench, names, args, results)
    finally:
        bench.cli("down", timeout=120)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


async def run_distributed(names: list[str], args: argparse.Namespace,
                          results: dict[str, Any]) -> None:
    """PostgreSQL (a database of our own), a private RabbitMQ node, `vifwire server
    --workers N` and `vifwire agent` with OVS in its own namespace."""
    base = Path(tempfile.mkdtemp(prefix="vifwire-chaosdist-"))
    cluster = await asyncio.to_thread(start_cluster, base, args.workers, args.logs)
    try:
        ensure_token(cluster.settings.run_dir)
        bench = Bench(cluster.settings, cluster.id[:6], [], cluster=cluster)
        results["distributed"] = {"workers": args.workers, "database": "postgresql",
                                  "bus": "rabbitmq (private node)"}
        await run_trials(bench, names, args, results)
    finally:
        await asyncio.to_thread(cluster.stop)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"trials": [], "skipped": {}}
    embedded = [n for n in args.faults if not FAULTS[n].distributed]
    distributed = [n for n in args.faults if FAULTS[n].distributed]
    if embedded:
        await run_embedded(embedded, args, results)
    if distributed:
        await run_distributed(distributed, args, results)
    return results


def per_fault(trials: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(t["fault"] for t in trials):
        runs = [t for t in trials if t["fault"] == name]
        recover = [t["recover_s"] for t in runs if t.get("recover_s") is not None]
        up = [t["kill"]["up_s"] for t in runs if "up_s" in t["kill"]]
        table[name] = {
            "trials": len(runs),
            "all_ports_active": sum(t.get("active") == t["vms"] for t in runs),
            "vms_not_active": sum(t["vms"] - (t.get("active") or 0) for t in runs),
            "vif_plugged_duplicates": sum(t["events"]["duplicates"] for t in runs),
            "vif_plugged_losses": sum(t["events"]["losses"] for t in runs),
            # received again and not acted on (older results have no such figure)
            "vif_plugged_repeats": sum(t["events"].get("repeats", 0) for t in runs),
            "orphan_namespaces": sum(t["orphans"]["namespaces"] for t in runs),
            "orphan_ovs_ports": sum(t["orphans"]["ovs_ports"] for t in runs),
            "orphan_neutron_ports": sum(t["orphans"]["neutron_ports"] for t in runs),
            "duplicate_ips": sum(t.get("duplicate_ips", 0) for t in runs),
            "drop_flow_present": sum(bool(t.get("dead_vlan_drop_flow")) for t in runs),
            "isolation_ok": sum(bool(t["isolation_ok"]) for t in runs),
            "up_s_max": max(up) if up else None,
            "recover_s_max": max(recover) if recover else None,
            # what the rest of the stack adds once the killed part is back
            "back_to_active_s_max": max((t["recover_s"] - t["kill"]["up_s"] for t in runs
                                         if t.get("recover_s") is not None
                                         and "up_s" in t["kill"]), default=None),
            "pings_lost": [t["ping"]["lost"] for t in runs],
            # killed while some VM still waited for its vif-plugged event
            "killed_mid_storm": sum(t["kill"].get("wired_before", t["vms"]) < t["vms"]
                                    for t in runs),
        }
        if any("outbox_empty" in t for t in runs):
            table[name]["outbox_settled"] = sum(bool(t.get("outbox_empty")) for t in runs)
    return table


TARGET_ZERO = ("vms_not_active", "vif_plugged_duplicates", "vif_plugged_losses",
               "orphan_namespaces", "orphan_ovs_ports", "orphan_neutron_ports", "duplicate_ips")


def print_tables(table: dict[str, dict[str, Any]], skipped: dict[str, str]) -> None:
    for name, row in table.items():
        n = row["trials"]
        print(f"\n== SIGKILL {name}: {n} trial(s)")
        print(f"  {'killed before last event':<28} {row['killed_mid_storm']}/{n}")
        print(f"  {'every port ACTIVE':<28} {row['all_ports_active']}/{n}")
        for key in TARGET_ZERO:
            print(f"  {key.replace('_', ' '):<28} {row[key]:<8} (target 0)")
            if key == "vif_plugged_duplicates":
                print(f"  {'vif plugged repeats':<28} {row['vif_plugged_repeats']:<8} "
                      "(received again, answered, not acted on)")
        print(f"  {'dead-VLAN drop flow':<28} {row['drop_flow_present']}/{n}")
        print(f"  {'cross-network ping fails':<28} {row['isolation_ok']}/{n}")
        print(f"  {'kill -> part back (s, max)':<28} {row['up_s_max']}")
        print(f"  {'kill -> all ACTIVE (s, max)':<28} {row['recover_s_max']}")
        back = row["back_to_active_s_max"]
        print(f"  {'back -> all ACTIVE (s, max)':<28} {None if back is None else round(back, 3)}")
        print(f"  {'pings lost (kept pair)':<28} {row['pings_lost']}")
        if "outbox_settled" in row:
            print(f"  {'outbox empty after (trials)':<28} {row['outbox_settled']}/{n}")
    for name, reason in skipped.items():
        print(f"\n== SIGKILL {name}: {reason}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=20, help="VMs per storm (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="trials per fault (default 5)")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"comma-separated, from {', '.join(FAULTS)}")
    parser.add_argument("--recover-timeout", type=float, default=60.0,
                        help="seconds to wait for every port ACTIVE after a fault")
    parser.add_argument("--kill-window", type=float, default=0.05,
                        help="the SIGKILL comes up to this much (uniform random) after k "
                             "VMs passed a random stage of their boot (k < VMs, random)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds after recovery to wait for late (duplicate) events")
    parser.add_argument("--workers", type=int, default=2,
                        help="server workers of the distributed stack (default 2)")
    parser.add_argument("--logs", type=Path, default=None,
                        help="distributed kinds: keep the server's and the agents' logs "
                             "(agents at INFO) in this directory")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    args.faults = [f for f in args.faults.split(",") if f]
    unknown = [f for f in args.faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(unknown)}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    started = datetime.now(UTC)
    load_start = os.getloadavg()
    results = asyncio.run(run(args))
    table = per_fault(results["trials"])
    document = {"bench": "chaos", "started": started.isoformat(), "seed": seed,
                "vms": args.vms, "repeats": args.repeats, "argv": sys.argv[1:],
                "load_average": {"start": load_start, "end": os.getloadavg()},
                "summary": table, **results}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"chaos-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(document, indent=1, default=str))
    print_tables(table, results["skipped"])
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
