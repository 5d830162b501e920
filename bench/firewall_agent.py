"""The agent's firewall at scale: flows per port, time and CPU to apply changes.

    .venv/bin/python bench/firewall_agent.py [--ports 100]

A private OVS in its own namespace carries `--ports` VIFs already wired (as in
bench/agent_restart.py, whose helpers this reuses). Two cases, each with a
fresh agent on a LocalBus whose server peer pushes every port's firewall:

- `prefix`: rules by remote IP prefix only (ingress TCP 22 from anywhere,
  egress all, IPv4 and IPv6);
- `group`: every port in one "default" group, Neutron's default rules (ingress
  from the group, egress all, IPv4 and IPv6), so each port's rules name every
  other port as a member.

Then a plug burst: a running agent, `--ports` new VIFs added at once in the
dead VLAN (as os-vif's isolate_vif leaves them), with no firewall, and with the
`group` one: per port the agent's seen -> wired -> up (its trace), since the
firewall is written before the tag.

For each of the first two: the agent's start until every port's firewall is installed (wall,
this process's CPU: all its threads), OpenFlow flows per port (the agent's
count and the bridge's total), then `firewall_changed` adding one rule to all
ports and (group case) `sg_members_changed` adding one member, each timed from
the cast until every port's new rules are written (the bundle has returned).
Indicative only on a shared machine: the load average is recorded.
Writes bench/results/firewall-agent-<UTC time>.json and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_restart import VLAN, ServerPeer, details, plug_all

from vifwire.agent.firewalls import group_key, port_key
from vifwire.agent.plan import network_config
from vifwire.agent.service import OvsAgent
from vifwire.bus.base import SERVER_TOPIC, agent_topic
from vifwire.bus.local import LocalBus
from vifwire.messages import FirewallRule, PortDetails, PortFirewall
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import OvsSettings, Settings
from vifwire.trace import NullTracer, Stage, Tracer

RESULTS = Path(__file__).parent / "results"


def rule(direction: str, ethertype: str, protocol: int | None = None, port: int | None = None,
         *, group: str | None = None, prefix: str | None = None) -> FirewallRule:
    return FirewallRule(security_group_id="default", direction=direction, ethertype=ethertype,
                        protocol=protocol, port_range_min=port, port_range_max=port,
                        remote_ip_prefix=prefix, remote_group_id=group)


def rules_for(case: str) -> list[FirewallRule]:
    if case == "group":
        return [rule("ingress", e, group="default") for e in ("IPv4", "IPv6")] + \
            [rule("egress", e) for e in ("IPv4", "IPv6")]
    return [rule("ingress", "IPv4", 6, 22, prefix="0.0.0.0/0"),
            rule("ingress", "IPv6", 6, 22, prefix="::/0")] + \
        [rule("egress", e) for e in ("IPv4", "IPv6")]


async def until(done: Callable[[], bool], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the agent did not finish in time")
        await asyncio.sleep(0.002)


async def timed(done: Callable[[], bool]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await until(done)
    return {"wall_ms": round(1000 * (time.perf_counter() - wall), 1),
            "cpu_ms": round(1000 * (time.process_time() - cpu), 1)}


async def one_case(case: str, runtime: OvsRuntime, settings: Settings, bus: LocalBus,
                   ports: dict[str, PortDetails], ips: dict[str, str]) -> dict[str, Any]:
    members = {"IPv4": sorted(ips.values()), "IPv6": []}
    for port_id, p in ports.items():
        p["firewall"] = PortFirewall(
            port_id=port_id, port_security_enabled=True, security_groups=["default"],
            stateful=True, rules=rules_for(case),
            remote_members={"default": members} if case == "group" else {},
            allowed_address_pairs=[])
    agent = OvsAgent(settings, bus, NullTracer(), ovs=runtime.settings, ovs_timeout=60)
    fw = agent.firewalls
    out: dict[str, Any] = {"case": case, "ports": len(ports)}
    try:
        start = await timed_start(agent, lambda: all(fw.enforced(p) for p in ports))
        out["start_until_all_installed"] = start
        out["agent_cpu_ms_per_port"] = round(start["cpu_ms"] / len(ports), 2)
        out["flows_per_port"] = round(sum(fw.flow_count(p) for p in ports) / len(ports), 1)
        out["bridge_flows"] = bridge_flows(runtime)
        topic = agent_topic(settings.host)
        changed = [{**p["firewall"], "rules": [*p["firewall"]["rules"],
                                               rule("ingress", "IPv4", 17, 53)]}
                   for p in ports.values()]
        bundles = fw.bundles
        await bus.cast(topic, "firewall_changed", firewalls=changed)
        out["rule_added_to_all"] = await timed(lambda: all(
            any("tp_dst=53" in f for f in fw.written(port_key(p)) or []) for p in ports))
        out["rule_added_to_all"]["bundles"] = fw.bundles - bundles
        if case == "group":
            newcomer = "10.99.0.1"
            bundles = fw.bundles
            await bus.cast(topic, "sg_members_changed", group_id="default",
                           members={"IPv4": [*members["IPv4"], newcomer], "IPv6": []})
            out["member_added_to_all"] = await timed(lambda: all(
                any(newcomer in f for f in fw.written(group_key("default")) or [])
                for p in ports))
            out["member_added_to_all"]["bundles"] = fw.bundles - bundles
    finally:
        await agent.stop()
    return out


async def timed_start(agent: OvsAgent, done: Callable[[], bool]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await agent.start()
    await until(done)
    return {"wall_ms": round(1000 * (time.perf_counter() - wall), 1),
            "cpu_ms": round(1000 * (time.process_time() - cpu), 1)}


async def plug_burst(template: PortFirewall | None, runtime: OvsRuntime, netns: str,
                     settings: Settings,
                     bus: LocalBus, ports: dict[str, PortDetails], tag: str) -> dict[str, Any]:
    """A running agent; the ports' VIFs plugged at once; per port seen -> up."""
    network = str(uuid.uuid4())
    fresh = {}
    for p in ports.values():
        q = {**p, "port_id": str(uuid.uuid4()), "network_id": network, "status": "DOWN"}
        q.pop("firewall", None)
        if template is not None:
            q["firewall"] = {**template, "port_id": q["port_id"]}
        fresh[q["port_id"]] = q
    ports.clear()
    ports.update(fresh)  # what the server peer answers
    tracer = Tracer("agent", None)
    agent = OvsAgent(settings, bus, tracer, ovs=runtime.settings, ovs_timeout=60)
    names = [f"vp{tag}{i:04d}" for i in range(len(fresh))]
    await agent.start()
    try:
        wall = time.perf_counter()
        cpu = time.process_time()
        await asyncio.to_thread(plug_all, runtime, netns, names, list(fresh),
                                [p["mac_address"] for p in fresh.values()], {"tag": "4095"})
        await until(lambda: sum(1 for e in tracer.events if e["stage"] == Stage.UP)
                    >= len(fresh))
        out: dict[str, Any] = {"firewall": template is not None, "ports": len(fresh),
                               "plug_until_all_up_ms": round(1000 * (time.perf_counter() - wall)),
                               "cpu_ms_per_port": round(1000 * (time.process_time() - cpu)
                                                        / len(fresh), 2),
                               "firewall_bundles": agent.firewalls.bundles}
    finally:
        await agent.stop()
    t: dict[str, dict[str, float]] = {}
    for e in tracer.events:
        t.setdefault(e["port"], {}).setdefault(e["stage"], e["t"])
    seen_up = sorted(1000 * (v[Stage.UP] - v[Stage.SEEN]) for v in t.values()
                     if Stage.UP in v and Stage.SEEN in v)
    out["seen_to_up_ms"] = {"p50": round(seen_up[len(seen_up) // 2], 1),
                            "p99": round(seen_up[int(len(seen_up) * 0.99) - 1], 1),
                            "max": round(seen_up[-1], 1)}
    runtime.vsctl("--if-exists", "del-br", runtime.settings.integration_bridge, timeout=120)
    runtime.ensure_bridge(runtime.settings.integration_bridge)
    return out


def bridge_flows(runtime: OvsRuntime) -> int:
    out = runtime.ofctl("dump-aggregate", runtime.settings.integration_bridge)
    return int(out.split("flow_count=")[1].split()[0])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    short = uuid.uuid4().hex[:6]
    netns = f"vwfwb-{short}"
    run_dir = Path(f"/tmp/vw-fwagent-bench-{short}")
    runtime = OvsRuntime(OvsSettings(run_dir=run_dir / "ovs", integration_bridge=f"br-fb{short}"),
                         netns=netns)
    settings = Settings(run_dir=run_dir, host=f"bench-fw-{short}", agent_heartbeat_s=30)
    network = str(uuid.uuid4())
    names = [f"vf{short}{i:04d}" for i in range(args.ports)]
    port_ids = [str(uuid.uuid4()) for _ in names]
    macs = [f"fa:16:3e:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}"
            for i in range(args.ports)]
    ips = {p: f"10.{50 + i // 250}.{i % 250}.{1 + i % 7}" for i, p in enumerate(port_ids)}
    ports = {p: details(p, network, settings.host, m) for p, m in zip(port_ids, macs, strict=True)}
    for p in ports.values():
        p["fixed_ips"] = [{"subnet_id": "s", "ip_address": ips[p["port_id"]]}]
    subprocess.run(["ip", "netns", "add", netns], check=True)
    bus = LocalBus()
    await bus.start()
    await bus.serve(SERVER_TOPIC, ServerPeer(ports))
    results = []
    try:
        runtime.start()
        plug_all(runtime, netns, names, port_ids, macs,
                 network_config(ports[port_ids[0]], VLAN))
        for case in ("prefix", "group"):
            results.append(await one_case(case, runtime, settings, bus, ports, ips))
            runtime.ofctl("del-flows", runtime.settings.integration_bridge)
        runtime.vsctl("--if-exists", "del-br", runtime.settings.integration_bridge, timeout=120)
        runtime.ensure_bridge(runtime.settings.integration_bridge)
        subprocess.run(["ip", "-n", netns, "-batch", "-"], input="".join(
            f"link del {n}\n" for n in names), text=True, check=False)
        template = next(iter(ports.values()))["firewall"]
        for n, fw in enumerate((None, template)):
            results.append(await plug_burst(fw, runtime, netns, settings, bus,
                                            ports, f"{short[:4]}{n}"))
    finally:
        await bus.stop()
        runtime.destroy()
        subprocess.run(["ip", "netns", "del", netns], check=False)
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"ports": args.ports, "cases": results,
            "load_avg": [round(x, 2) for x in os.getloadavg()],
            "note": "indicative: shared 2-core machine"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=100)
    result = asyncio.run(run(parser.parse_args()))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"firewall-agent-{stamp}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
