"""Agent restart at scale: 1,000 plugged ports, a restarted agent, one clock.

    .venv/bin/python bench/agent_restart.py [--ports 1000] [--restarts 3]
        [--ab [raw_rows|keep]] [--no-firewall] [--profile FILE]

A private OVS in its own network namespace carries `--ports` VIFs (veth pairs
whose far ends stay in that namespace, plus three VMs: namespaces with an
address each), added in a few transactions already wired as an agent leaves
them (local VLAN and Port.other_config; the last VIF, which the server does not
know, in the dead VLAN with its drop flow). The agent runs in this process on a
LocalBus, with a server peer that knows every port bound to this host (as the
server's `get_host_ports` would answer). Each port has an address and, as
`vifwire boot` makes them, port security on in one default group (Neutron's
rules: ingress from the group's members, all egress), so every port carries
its firewall (~24 rules, plus one member flow per port in the group's shared
flows; `--no-firewall`: none). A first start installs the flows;
then the agent is stopped and started again, `--restarts` times. Each time is
measured from `start()` until the new agent has re-read OVSDB and the server,
checked every port's tag and re-reported all of them up (the last `ports_up`
received), with the 1-minute load average at its start and the CPU this
process spent meanwhile (all its threads; the wall time on a loaded host is
mostly waiting for a core). A continuous ping between the two kept VMs (every
10 ms) runs throughout; each lost reply is timed (`ping -D -O`) and counted
against the restart it fell in (or within 1 s after it). So does a ping from the
dead-VLAN VM to a kept one: every reply it gets is a breach of isolation. After
each restart (outside the timed window) the bench checks what the agent left:
the bridge fail secure, every port's tag, the base flows and the dead port's
drop flow; and whether the agent wrote its flows or found them in place
(`flows_kept` for the base flows; `firewall_kept` keys of firewall rules kept
as found, `firewall_bundles` written).

Target (issue 12): under 1 s per restart for 1,000 ports, 0 pings lost, 0
isolation breaches, every check clean.
Writes bench/results/agent-restart-<UTC time>.json and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vifwire.agent.model import DEAD_VLAN
from vifwire.agent.plan import network_config
from vifwire.agent.service import OvsAgent
from vifwire.bus.base import SERVER_TOPIC
from vifwire.bus.local import LocalBus
from vifwire.messages import AgentState, FirewallRule, PortDetails, PortFirewall
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import OvsSettings, Settings
from vifwire.trace import NullTracer

RESULTS = Path(__file__).parent / "results"
TARGET_S = 1.0
VLAN = 1  # the local VLAN an agent gives the first network it meets


class ServerPeer:
    """The server's side of the agent contract, for ports all bound to `host`."""

    def __init__(self, ports: dict[str, PortDetails]) -> None:
        self.ports = ports
        self.up: set[str] = set()
        self.all_up = asyncio.Event()

    async def get_host_ports(self, host: str) -> list[PortDetails]:
        return list(self.ports.values())

    async def get_port_details(self, host: str, port_id: str) -> PortDetails | None:
        return self.ports.get(port_id)

    async def ports_up(self, host: str, port_ids: list[str]) -> list[str]:
        self.up.update(port_ids)
        if len(self.up) >= len(self.ports):
            self.all_up.set()
        return list(port_ids)

    async def ports_down(self, host: str, port_ids: list[str]) -> list[str]:
        return list(port_ids)

    async def report_state(self, agent: AgentState) -> None:
        return None

    def reset(self) -> None:
        self.up.clear()
        self.all_up.clear()


def default_group(group: str) -> list[FirewallRule]:
    """Neutron's default group: ingress from its members, all egress (IPv4, IPv6)."""
    return [FirewallRule(security_group_id=group, direction=direction, ethertype=eth,
                         protocol=None, port_range_min=None, port_range_max=None,
                         remote_ip_prefix=None,
                         remote_group_id=group if direction == "ingress" else None)
            for direction in ("ingress", "egress") for eth in ("IPv4", "IPv6")]


def details(port_id: str, network: str, host: str, mac: str, ip: str,
            members: dict[str, dict[str, list[str]]] | None) -> PortDetails:
    """A bound port; with `members` (group -> ethertype -> addresses: one default
    group), port security on in that group, as `vifwire boot` makes ports."""
    port = PortDetails(port_id=port_id, mac_address=mac, network_id=network,
                       network_type="vxlan", segmentation_id=100, physical_network=None,
                       mtu=1450, admin_state_up=True,
                       fixed_ips=[{"subnet_id": "bench-subnet", "ip_address": ip}],
                       device_owner="compute:nova", device_id=str(uuid.uuid4()), host=host,
                       status="ACTIVE")
    if members is not None:
        (group,) = members
        port["firewall"] = PortFirewall(port_id=port_id, port_security_enabled=True,
                                        security_groups=[group], stateful=True,
                                        rules=default_group(group), remote_members=members)
    return port


def sh(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True, timeout=300)


def quiet(netns: str) -> None:
    """No IPv6 on new links in `netns`: each end of 1,000 idle veths would send a
    few router solicitations, MLD reports and DAD probes, every one flooded by
    NORMAL to all 1,000 ports of the one network. That storm (millions of sends)
    kept vswitchd's main thread, which also forwards the netdev datapath's
    packets, away from everything else for tens of seconds."""
    for conf in ("default", "all"):
        sh("ip", "netns", "exec", netns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.disable_ipv6=1")


def plug_all(runtime: OvsRuntime, netns: str, names: list[str], ports: list[str],
             macs: list[str], wiring: dict[str, str], dead: str, batch: int = 250) -> None:
    """Create the veths and add them to the bridge, wired as an agent left them.

    Each port carries the local VLAN and Port.other_config an agent writes
    (`wiring`), so the first agent start is already a restart: nothing to tag;
    the port named `dead` (unknown to the server) sits in the dead VLAN.
    The adds run `--no-wait` in a few transactions (each returns once
    ovsdb-server committed it, not once vswitchd opened the devices: on a loaded
    machine a vsctl-style wait for hundreds of netdev ports can outlast any
    timeout); one waiting change at the end, with a generous deadline, returns
    once vswitchd has applied all of them.
    """
    quiet(netns)
    links = []
    for name in names:
        links += [f"link add {name} type veth peer name {name}p", f"link set {name} up",
                  f"link set {name}p up"]
    sh("ip", "-n", netns, "-batch", "-", stdin="\n".join(links) + "\n")
    bridge = runtime.settings.integration_bridge
    # fail_mode=secure before the ports, as an agent leaves it: setting it later
    # makes vswitchd reconfigure every port.
    runtime.vsctl("--no-wait", "set", "Bridge", bridge, "fail_mode=secure")
    config = [f"other_config:{k}={v}" for k, v in wiring.items()]
    for start in range(0, len(names), batch):
        args: list[str] = []
        for name, port_id, mac in zip(names[start:start + batch], ports[start:start + batch],
                                      macs[start:start + batch], strict=True):
            wired = [f"tag={DEAD_VLAN}"] if name == dead else [f"tag={wiring['tag']}", *config]
            args += ["--", "--may-exist", "add-port", bridge, name, *wired,
                     "--", "set", "Interface", name,
                     f"external_ids:iface-id={port_id}", f"external_ids:attached-mac={mac}",
                     "external_ids:iface-status=active"]
        runtime.vsctl("--no-wait", *args, timeout=120)
    # Any change without --no-wait bumps next_cfg and waits for vswitchd to catch up.
    runtime.vsctl("set", "Open_vSwitch", ".", f"external_ids:vifwire-bench-ports={len(names)}",
                  timeout=600)


def kept_vm(runtime: OvsRuntime, ovs_netns: str, name: str, ip: str, mac: str) -> str:
    """A namespace `name` whose eth0 is the far end of VIF `name` (already plugged)."""
    sh("ip", "netns", "add", name)
    quiet(name)
    sh("ip", "-n", ovs_netns, "link", "set", f"{name}p", "netns", name)
    inside = ["ip", "-n", name]
    sh(*inside, "link", "set", f"{name}p", "name", "eth0")
    sh(*inside, "link", "set", "eth0", "address", mac)
    sh(*inside, "addr", "add", f"{ip}/16", "dev", "eth0")
    sh(*inside, "link", "set", "eth0", "up")
    return name


def check(runtime: OvsRuntime, names: list[str], dead: str) -> list[str]:
    """What is wrong with the bridge the agent left (nothing: [])."""
    bridge, problems = runtime.settings.integration_bridge, []
    if runtime.vsctl("--no-wait", "get", "Bridge", bridge, "fail_mode").strip() != "secure":
        problems.append("bridge not fail secure")
    rows = json.loads(runtime.vsctl("--no-wait", "--format=json", "--columns=name,tag",
                                    "list", "Port"))["data"]
    tags = {name: tag for name, tag in rows}
    wrong = [n for n in names if tags.get(n) != (DEAD_VLAN if n == dead else VLAN)]
    if wrong:
        problems.append(f"{len(wrong)} ports with a wrong tag, e.g. {wrong[0]}: "
                        f"{tags.get(wrong[0])}")
    flows = runtime.ofctl("dump-flows", "--no-stats", "--names", bridge)
    for wanted in ("priority=0 actions=NORMAL", f"priority=65535,dl_vlan={DEAD_VLAN} actions=drop",
                   f"priority=2,in_port={dead} actions=drop"):
        if wanted not in flows:
            problems.append(f"flow missing: {wanted}")
    return problems


class Ping:
    """A ping every 10 ms between two VMs; which ones got no reply, and when."""

    def __init__(self, netns: str, ip: str) -> None:
        # -D: a timestamp on every line; -O: a line for each reply still missing
        # when the next request leaves, so a lost one has a time too. Into a file:
        # a pipe read only at the end fills after ~800 lines, and ping then stops
        # sending (it did: 812 requests in a 38 s run of 20 restarts).
        self._out = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by stop or kill)
        self._proc = subprocess.Popen(["ip", "netns", "exec", netns, "ping", "-D", "-O", "-i",
                                       "0.01", "-W", "1", ip], stdout=self._out, text=True,
                                      # the dead VM's pings fail ARP: ENOBUFS, each logged
                                      stderr=subprocess.DEVNULL)

    def stop(self) -> tuple[int, dict[int, float], int]:
        """(requests sent, lost request seq -> when it was noticed missing, replies)."""
        self._proc.send_signal(2)
        self._proc.wait(timeout=10)
        self._out.seek(0)
        out = self._out.read()
        self._out.close()
        sent = int(re.search(r"(\d+) packets transmitted", out).group(1))  # type: ignore[union-attr]
        answered: set[int] = set()
        missing: dict[int, float] = {}
        for line in out.splitlines():
            found = re.match(r"\[([\d.]+)\] (?:.*bytes from.*icmp_seq=(\d+)"
                             r"|no answer yet for icmp_seq=(\d+))", line)
            if found is None:
                continue
            if found.group(2) is not None:
                answered.add(int(found.group(2)))
            else:
                missing.setdefault(int(found.group(3)), float(found.group(1)))
        # The last request may still be in flight when ping stops: not a loss.
        lost = {seq: missing.get(seq, 0.0) for seq in range(1, sent) if seq not in answered}
        return sent, lost, len(answered)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._out.close()


async def restart(agent: OvsAgent | None, make: Any, peer: ServerPeer) -> tuple[OvsAgent,
                                                                           dict[str, Any]]:
    """Stop `agent`, start a new one; timed from start() to the last port reported up."""
    if agent is not None:
        await agent.stop()
    peer.reset()
    agent = make()
    load = round(os.getloadavg()[0], 2)
    wall, started, cpu = time.time(), time.perf_counter(), time.process_time()
    await agent.start()
    start_s = time.perf_counter() - started
    await asyncio.wait_for(peer.all_up.wait(), 120)
    return agent, {"start_s": round(start_s, 3),
                   "all_reported_s": round(time.perf_counter() - started, 3),
                   # this process's CPU (all threads): what the load cannot stretch
                   "cpu_s": round(time.process_time() - cpu, 3),
                   "flow_restores": agent.flow_restores, "flows_kept": agent.flows_kept,
                   # firewall bundles written up to the last report (0: all adopted)
                   "firewall_bundles": agent.firewalls.bundles,
                   "firewall_kept": agent.firewalls.kept,  # keys found in place
                   "load_1min": load,
                   "window": (wall, time.time())}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    short = uuid.uuid4().hex[:6]
    netns = f"vwrs-{short}"
    run_dir = Path(f"/tmp/vw-agent-restart-{short}")
    runtime = OvsRuntime(OvsSettings(run_dir=run_dir / "ovs", integration_bridge=f"br-rs{short}"),
                         netns=netns)
    settings = Settings(run_dir=run_dir, host=f"bench-restart-{short}", agent_heartbeat_s=30,
                        quota_port=-1)  # --ports may pass the default 500
    network = str(uuid.uuid4())
    names = [f"vr{short}{i:04d}" for i in range(args.ports)]
    port_ids = [str(uuid.uuid4()) for _ in names]
    macs = [f"fa:16:3e:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}"
            for i in range(args.ports)]
    dead = names[-1]  # a VIF the server does not know: isolated in the dead VLAN
    ips = [f"10.77.{i // 250}.{i % 250 + 1}" for i in range(args.ports)]
    # One default group holding every known port (the server sends each port
    # the whole member list, as `get_host_ports` does; one list shared here).
    members = None if args.no_firewall else {
        str(uuid.uuid4()): {"IPv4": ips[:-1], "IPv6": []}}
    peer = ServerPeer({p: details(p, network, settings.host, m, ip, members)
                       for p, m, ip in zip(port_ids[:-1], macs, ips, strict=False)})
    vms: list[str] = []
    bus = LocalBus()
    await bus.start()
    ping: Ping | None = None
    breach: Ping | None = None
    agent: OvsAgent | None = None

    def make(fast: bool = True) -> OvsAgent:
        """An agent with the speed-up under A/B (`--ab`) on or off."""
        ovs = replace(runtime.settings, raw_rows=fast or args.ab != "raw_rows")
        agent = OvsAgent(settings, bus, NullTracer(), ovs=ovs, ovs_timeout=60)
        agent.firewalls.keep_found = fast or args.ab != "keep"
        return agent

    try:
        sh("ip", "netns", "add", netns)  # inside the try: removed whatever fails next
        runtime.start()
        setup = time.perf_counter()
        plug_all(runtime, netns, names, port_ids, macs,
                 network_config(peer.ports[port_ids[0]], VLAN), dead)
        setup_s = time.perf_counter() - setup
        for i in (0, 1, len(names) - 1):
            vms.append(names[i])  # recorded first: removed even if half made
            kept_vm(runtime, netns, names[i], ips[i], macs[i])
        await bus.serve(SERVER_TOPIC, peer)
        agent, first = await restart(None, make, peer)  # installs the flows: ping works
        first["checks"] = check(runtime, names, dead)
        ping = Ping(vms[0], ips[1])
        breach = Ping(vms[2], ips[0])  # from the dead VLAN: never answered
        await asyncio.sleep(1.0)  # ping steady, ARP resolved
        restarts = []
        profile = cProfile.Profile() if args.profile else None
        for i in range(args.restarts):
            if profile is not None and i == args.restarts - 1:
                profile.enable()
            fast = not (args.ab and i % 2)
            agent, figures = await restart(agent, lambda f=fast: make(f), peer)
            if profile is not None and i == args.restarts - 1:
                profile.disable()
            figures["fast"] = fast
            figures["checks"] = check(runtime, names, dead)
            restarts.append(figures)
            await asyncio.sleep(0.5)
        if profile is not None:
            profile.dump_stats(args.profile)
        await agent.stop()
        agent = None
        sent, lost, _ = ping.stop()
        breach_sent, _, breaches = breach.stop()
    finally:
        if agent is not None:
            await agent.stop()
        for pinger in (ping, breach):
            if pinger is not None:
                pinger.kill()
        try:
            await bus.stop()
            runtime.destroy()
        finally:  # a failed stop must not keep the namespaces (one was left on 12-01)
            shutil.rmtree(run_dir, ignore_errors=True)
            for name in [*vms, netns]:
                subprocess.run(["ip", "netns", "del", name], check=False)
    for figures in restarts:
        begin, end = figures.pop("window")
        # when each lost one was noticed missing, in seconds after start()
        figures["lost_at_s"] = [round(t - begin, 3) for t in sorted(lost.values())
                                if begin <= t <= end + 1.0]
        figures["pings_lost"] = len(figures["lost_at_s"])
    first.pop("window")
    fast = [r for r in restarts if r["fast"]]
    worst = max(r["all_reported_s"] for r in fast)
    clean = not any(r["checks"] for r in [first, *restarts])
    result = {"ports": args.ports, "firewall": not args.no_firewall,
              "setup_s": round(setup_s, 1), "first_start": first,
              "restarts": restarts,
              "restart_median_s": median(fast, "all_reported_s"),
              "restart_max_s": worst, "target_s": TARGET_S,
              "met": worst < TARGET_S and not lost and not breaches and clean,
              "pings_sent": sent, "pings_lost": len(lost),
              "isolation_pings_sent": breach_sent, "isolation_breaches": breaches,
              "checks_clean": clean, "load_avg": [round(x, 2) for x in os.getloadavg()]}
    if args.ab:  # the speed-up against the plain path, restarts alternating
        plain = [r for r in restarts if not r["fast"]]
        result["ab"] = {mode: {"median_s": median(rs, "all_reported_s"),
                               "median_cpu_s": median(rs, "cpu_s")}
                        for mode, rs in ((args.ab, fast), ("plain", plain)) if rs}
    return result


def median(restarts: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in restarts), 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=1000, help="VIFs on the bridge (>= 3)")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--ab", nargs="?", const="raw_rows", choices=("raw_rows", "keep"),
                        help="alternate restarts with a speed-up on and off (the figures "
                             "and target count the ones with it on): raw_rows "
                             "(OvsSettings.raw_rows, the default) or keep (firewall rules "
                             "found in place are kept, not rewritten: Firewalls.keep_found)")
    parser.add_argument("--no-firewall", action="store_true",
                        help="ports without port security (no firewall rules at all)")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile the last restart (the event loop's thread) into FILE")
    result = asyncio.run(run(parser.parse_args()))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"agent-restart-{stamp}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"restart of {result['ports']} ports: {result['restart_max_s']:.3f} s worst "
          f"(target < {TARGET_S} s), {result['pings_lost']} of {result['pings_sent']} "
          f"pings lost, {result['isolation_breaches']} isolation breaches, checks "
          f"{'clean' if result['checks_clean'] else 'FAILED'}; written to {out}")


if __name__ == "__main__":
    main()
