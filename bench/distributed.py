"""Distributed-mode benchmark: what the bus and the database cost, and 4 hosts at once.

    .venv/bin/python bench/distributed.py single [--vms 100] [--workers 2,4] [--repeats 1]
                                                 [--no-embedded] [--group-members N]
    .venv/bin/python bench/distributed.py multi  [--hosts 4] [--vms 1000] [--workers 4] [--trace]
                                                 [--max-concurrent-builds 10]
                                                 [--set SECTION.KEY=VALUE ...]

`single`: the same storm on one host, first in the embedded default (`vifwire up`:
one process, SQLite, in-process bus), then in distributed mode for each worker
count: `vifwire server --workers N` on a PostgreSQL database of its own (created
in the shared server, dropped after) and a RabbitMQ vhost of its own on the
shared broker (made with rabbitmqctl, deleted after), and one `vifwire agent`
with a private OVS in its own network namespace. The driver is `vifwire boot
--json` (with `--target` in distributed mode), after a 2-VM warm-up storm.

`multi`: one server (N workers) and an agent per host, each on its own private
OVS namespace on this machine; the VMs are split evenly and booted by one
`vifwire boot --host H` process per host, all at once. Each boot runs its own
Nova endpoint, so a fan-out (bench/dist_nova.py) sits at the server's Nova URL.

`--group-members N` (distributed storms): N unbound ports join the storm's
default security group first, so each bind and each member round carries N more
addresses: what the member lists of a storm of N more VMs cost the server, the
broker, the database and the agents, on a machine that cannot boot them.

`--set` (multi) writes a setting into the vifwire.conf of the server and agents,
for an A/B of one knob (e.g. `--set database.threads=1`); the command line in the
results says which.

Figures per storm (bench/dist_storm.py): plug -> vif-plugged p50/p99/max, create
-> vif-plugged, CPU per VM from the first create to the last event of: the server
(supervisor + every worker), the agent(s), the shared broker's beam.smp (shared
with every other user of the broker: an upper bound of what this run cost it)
and the PostgreSQL backends serving this run's database; beside them the rig's
own share, the `vifwire boot` processes (the emulated Nova + os-vif, with the
pings they waited for), and the whole machine's busy CPU time (/proc/stat, with
the average number of busy CPUs over the window: on this 2-CPU machine a
1,000-VM storm keeps both busy); with the load average and the calibration
loop. `--trace` (multi) adds where each port's plug -> vif-plugged went,
transition by transition (plugged -> seen -> wired -> up -> active -> event_sent
-> event_received), from the stage marks the server workers, agents and boots
write (VIFWIRE_TRACE_DIR). Results:
bench/results/distributed-<mode>-<time>.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from dist_rig import (
    BROKER_PORT,
    Proc,
    Rig,
    answers,
    fill_group,
    free_port,
    listener_pid,
    make_network,
    pg_backends,
    pids_probe,
    scratch_dir,
    wait_until,
)
from dist_storm import Boot, describe, loadavg, run_storm, stage_split
from storm import cpu_split

from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import OvsSettings

RESULTS = Path(__file__).parent / "results"
NETWORK = "bench"
TARGETS = {"multi_p99_ms": 250.0, "multi_create_to_event_max_ms": 5000.0,
           "server_cpu_per_vm_ms": 2.0}
BROKER_NOTE = ("beam.smp of the SHARED broker at 127.0.0.1:5672: it also serves every other "
               "helper's tests at the same moment, so this is an upper bound")


def nova_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v2.1"


def ovs_pids(run_dir: Path, netns: str) -> list[int]:
    runtime = OvsRuntime(OvsSettings(run_dir=run_dir / "ovs"), netns=netns)
    return [p for p in (runtime.pid("ovsdb-server"), runtime.pid("ovs-vswitchd")) if p]


def embedded(base: Path, vms: int, repeats: int) -> list[dict[str, Any]]:
    rig = Rig(base / "embedded")
    rig.base.mkdir(parents=True)
    nova = nova_url(free_port())
    try:
        host = rig.start_embedded(nova)
        stack = psutil.Process(rig.stack_pid())

        def split() -> dict[str, float]:
            server, agent = cpu_split(stack)
            return {"server": server, "agent": agent}

        probes = [split, pids_probe("ovs", lambda: ovs_pids(host.run_dir, host.netns))]
        boot = [Boot(host, 2, nova)]
        run_storm(rig, boot, probes, network=NETWORK, external=False, connectivity=False)
        return [{"mode": "embedded", "workers": 1,
                 **run_storm(rig, [Boot(host, vms, nova)], probes, network=NETWORK,
                             external=False)} for _ in range(repeats)]
    finally:
        rig.close()


def distributed(base: Path, workers: int, hosts: int, vms: int, repeats: int,
                cidr: str, max_concurrent_builds: int = 0,
                group_members: int = 0, trace: bool = False,
                settings: list[str] | None = None) -> list[dict[str, Any]]:
    rig = Rig(base / f"dist-w{workers}-h{hosts}", settings=settings or [])
    rig.base.mkdir(parents=True)
    if trace:
        rig.trace_dir = rig.base / "trace"
        rig.trace_dir.mkdir()
    storms = _distributed(rig, workers, hosts, vms, repeats, cidr, max_concurrent_builds,
                          group_members)
    # After rig.close(): every process wrote its marks as it stopped.
    if rig.trace_dir is not None:
        for storm in storms:
            storm["stage_split"] = stage_split(rig.trace_dir, storm.pop("port_ids"))
    return storms


def _distributed(rig: Rig, workers: int, hosts: int, vms: int, repeats: int,
                 cidr: str, max_concurrent_builds: int,
                 group_members: int) -> list[dict[str, Any]]:
    boot_novas = [nova_url(free_port()) for _ in range(hosts)]
    server_nova = boot_novas[0] if hosts == 1 else nova_url(free_port())
    try:
        rig.create_database()
        rig.create_vhost()
        server = rig.start_server(workers, server_nova)
        for i in range(hosts):
            rig.start_agent(f"bench-h{i}-{rig.rid}", server_nova)
        rig.wait_agents_alive()
        if hosts > 1:
            port = int(server_nova.rsplit(":", 1)[1].split("/")[0])
            _spawn_fanout(rig, port, boot_novas)
        network_id = make_network(rig.api_url, NETWORK, cidr)
        if group_members:
            fill_group(rig.api_url, network_id, group_members)
        probes = [
            pids_probe("server", lambda: [server.pid, *rig.children(server)]),
            pids_probe("agent", lambda: [h.agent.pid for h in rig.hosts if h.agent]),
            pids_probe("rabbitmq (shared broker)",
                       lambda: [p for p in [listener_pid(BROKER_PORT)] if p]),
            pids_probe("postgres (this db's backends)", pg_backends(rig.database_url
                                                                     .rsplit("/", 1)[1]),
                       every=5),
            pids_probe("ovs", lambda: [p for h in rig.hosts
                                       for p in ovs_pids(h.run_dir, h.netns)]),
        ]
        share = [vms // hosts + (1 if i < vms % hosts else 0) for i in range(hosts)]
        boots = [Boot(h, n, url) for h, n, url in zip(rig.hosts, share, boot_novas, strict=True)]
        run_storm(rig, [Boot(rig.hosts[0], 2, boot_novas[0])], probes, network=NETWORK,
                  external=True, connectivity=False)  # warm-up: imports, pools, queues
        return [{"mode": "distributed", "workers": workers, "broker": BROKER_NOTE,
                 "group_members_added": group_members,
                 "database": "PostgreSQL (shared server, own database)",
                 **run_storm(rig, boots, probes, network=NETWORK, external=True,
                             max_concurrent_builds=max_concurrent_builds)}
                for _ in range(repeats)]
    except Exception:
        for proc in rig.procs:
            print(f"--- {proc.name} (pid {proc.pid}) log tail:\n{proc.tail()}", file=sys.stderr)
        raise
    finally:
        rig.close()


def _spawn_fanout(rig: Rig, port: int, targets: list[str]) -> Proc:
    log = rig.base / "nova-fanout.log"
    with log.open("ab") as out:
        popen = subprocess.Popen([sys.executable, str(Path(__file__).parent / "dist_nova.py"),
                                  str(port), *targets], stdout=out, stderr=subprocess.STDOUT)
    proc = Proc("nova-fanout", popen, log)
    rig.procs.append(proc)
    wait_until("the Nova fan-out", lambda: answers(f"http://127.0.0.1:{port}/"),
               alive=proc.alive, timeout=30)
    return proc


def write(mode: str, argv: list[str], storms: list[dict[str, Any]],
          extra: dict[str, Any] | None = None) -> Path:
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": f".venv/bin/python bench/distributed.py {' '.join(argv)}",
              "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version(),
                          "kernel": platform.release(), "loadavg_at_end": loadavg()},
              "targets": TARGETS, "storms": storms, **(extra or {})}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"distributed-{mode}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def cost_of_distribution(storms: list[dict[str, Any]]) -> list[str]:
    """Distributed against embedded, per worker count: latency and server CPU ratios."""
    base = next((s for s in storms if s["mode"] == "embedded"), None)
    if base is None or "cpu_ms_per_vm" not in base:
        return []
    lines = []
    for s in storms:
        if s["mode"] != "distributed" or "cpu_ms_per_vm" not in s:
            continue
        ratios = []
        for key in ("p50", "p99", "max"):
            a, b = s["plug_to_event_ms"][key], base["plug_to_event_ms"][key]
            ratios.append(f"{key} {a:.1f}/{b:.1f} ms = x{a / b:.2f}")
        srv, emb = s["cpu_ms_per_vm"]["server"], base["cpu_ms_per_vm"]["server"]
        lines.append(f"distributed w{s['workers']} vs embedded: {', '.join(ratios)}; "
                     f"server CPU/VM {srv:.2f}/{emb:.2f} ms = x{srv / emb:.2f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    single = sub.add_parser("single", help="one host: embedded vs distributed")
    single.add_argument("--vms", type=int, default=100)
    single.add_argument("--workers", default="2,4")
    single.add_argument("--repeats", type=int, default=1)
    single.add_argument("--no-embedded", action="store_true")
    single.add_argument("--group-members", type=int, default=0,
                        help="unbound ports added to the default group first (distributed)")
    multi = sub.add_parser("multi", help="N hosts at once, one server")
    multi.add_argument("--hosts", type=int, default=4)
    multi.add_argument("--vms", type=int, default=1000)
    multi.add_argument("--workers", type=int, default=4)
    multi.add_argument("--repeats", type=int, default=1)
    multi.add_argument("--group-members", type=int, default=0,
                       help="unbound ports added to the default group first")
    multi.add_argument("--trace", action="store_true",
                       help="mark every port's stages in every process and report where "
                            "plug -> vif-plugged went, transition by transition")
    multi.add_argument("--max-concurrent-builds", type=int, default=0,
                       help="per host, as Nova's max_concurrent_builds (its default: 10); "
                            "0: every VM at once")
    multi.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="a vifwire.conf setting of the server and agents (A/B runs), "
                            "e.g. database.threads=2; recorded in the results")
    args = parser.parse_args()
    storms: list[dict[str, Any]] = []
    # Each step runs in the one scratch dir: `step(base)`.
    run: list[Callable[[Path], list[dict[str, Any]]]] = []
    if args.mode == "single":
        if not args.no_embedded:
            run.append(functools.partial(embedded, vms=args.vms, repeats=args.repeats))
        for w in (int(x) for x in args.workers.split(",")):
            run.append(functools.partial(distributed, workers=w, hosts=1, vms=args.vms,
                                         repeats=args.repeats, cidr="10.0.0.0/22",
                                         group_members=args.group_members))
    else:
        run.append(functools.partial(distributed, workers=args.workers, hosts=args.hosts,
                                     vms=args.vms, repeats=args.repeats, cidr="10.0.0.0/20",
                                     max_concurrent_builds=args.max_concurrent_builds,
                                     group_members=args.group_members, trace=args.trace,
                                     settings=args.set))
    with scratch_dir("vwdistbench-") as base:
        for step in run:
            for s in step(base):
                storms.append(s)
                print(describe(f"{s['mode']} (workers {s['workers']}), {s['vms']} VMs", s),
                      flush=True)
    ratios = cost_of_distribution(storms)
    for line in ratios:
        print(line)
    if args.mode == "multi":
        for s in storms:
            for key, value in (("multi_p99_ms", s["plug_to_event_ms"]["p99"]),
                               ("multi_create_to_event_max_ms", s["create_to_event_ms"]["max"]),
                               ("server_cpu_per_vm_ms", s.get("cpu_ms_per_vm", {}).get(
                                   "server"))):
                verdict = "n/a" if value is None else "ok" if value <= TARGETS[key] else "MISSED"
                print(f"{key:<30}{value if value is None else round(value, 2)!s:>10}"
                      f"  target {TARGETS[key]:g}  {verdict}")
    path = write(args.mode, sys.argv[1:], storms, {"ratios": ratios})
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
