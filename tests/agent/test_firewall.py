"""Security groups enforced on br-int, proven by traffic: real OVS (netdev
datapath, conntrack), namespaces, python sockets (fw_probe.py).

The rig: one network, three VMs.
- `a` (group "web"): ingress ICMP and TCP 80 from anywhere, UDP 53 from members
  of "clients"; egress everything.
- `b` (group "clients", a member): egress everything, no ingress rule.
- `c` (group "other", no member of "clients"): egress everything, ingress ICMP;
  allowed address pair 10.77.0.50.
This module has its own private OVS (the `ovs` fixture is module-scoped), so
killing its vswitchd disturbs no other test.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from vifwire.agent.firewalls import Firewalls, port_key
from vifwire.agent.service import OvsAgent
from vifwire.bus.base import agent_topic
from vifwire.bus.local import LocalBus
from vifwire.messages import FirewallRule, PortDetails, PortFirewall
from vifwire.ovs.flow_snapshot import FlowSnapshots
from vifwire.ovs.flows import FlowTable, group_cookie
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import Settings

from .peers import ServerPeer, Vm, port, sh, wait_for

pytestmark = pytest.mark.ovs

PROBE = str(Path(__file__).with_name("fw_probe.py"))
NET = "net-fwagent"


@pytest.fixture
def fast() -> bool:
    return True  # the OVSDB paths are covered elsewhere; traffic is the point here


def rule(direction: str, protocol: int | None = None, low: int | None = None,
         high: int | None = None, *, remote_group: str | None = None,
         prefix: str | None = None, group: str = "web") -> FirewallRule:
    return FirewallRule(security_group_id=group, direction=direction, ethertype="IPv4",
                        protocol=protocol, port_range_min=low, port_range_max=high,
                        remote_ip_prefix=prefix, remote_group_id=remote_group)


EGRESS = rule("egress")
WEB = [rule("ingress", 1), rule("ingress", 6, 80, 80),
       rule("ingress", 17, 53, 53, remote_group="clients"), EGRESS]


def firewall(port_id: str, groups: list[str], rules: list[FirewallRule],
             members: dict[str, dict[str, list[str]]] | None = None,
             pairs: list[str] = ()) -> PortFirewall:  # type: ignore[assignment]
    return PortFirewall(port_id=port_id, port_security_enabled=True, security_groups=groups,
                        stateful=True, rules=rules, remote_members=members or {},
                        allowed_address_pairs=[{"ip_address": ip, "mac_address": ""}
                                               for ip in pairs])


@dataclass
class Rig:
    agent: OvsAgent
    a: Vm
    b: Vm
    c: Vm
    ports: dict[str, PortDetails]
    log: Path


def probe(vm: Vm, *args: str) -> bool:
    done = subprocess.run(["ip", "netns", "exec", vm.netns, sys.executable, PROBE, *args],
                          capture_output=True, text=True, timeout=30, check=False)
    return done.returncode == 0


async def reach(vm: Vm, *args: str) -> bool:
    return await asyncio.to_thread(probe, vm, *args)


async def ping(vm: Vm, ip: str, count: int = 3) -> bool:
    return await asyncio.to_thread(vm.ping, ip, count)


def fw_vm(vms: Callable[..., Vm], port_id: str, ip: str, mac: str) -> Vm:
    vm = vms(port_id, ip, mac, plug=False, prefix="fwag")  # namespace vwa-fwag...
    assert probe(vm, "nocsum", "eth0")
    vm.plug()
    return vm


@pytest.fixture
async def rig(make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
              vms: Callable[..., Vm], tmp_path: Path) -> AsyncIterator[Rig]:
    ids = {n: str(uuid.uuid4()) for n in "abc"}
    ips = {"a": "10.77.0.1", "b": "10.77.0.2", "c": "10.77.0.3"}
    fws = {"a": firewall(ids["a"], ["web"], WEB, {"clients": {"IPv4": [ips["b"]]}}),
           "b": firewall(ids["b"], ["clients"], [rule("egress", group="clients")]),
           "c": firewall(ids["c"], ["other"], [rule("egress", group="other"),
                                               rule("ingress", 1, group="other")],
                         pairs=["10.77.0.50"])}
    ports = {}
    for i, n in enumerate("abc", 1):
        p = port(ids[n], NET, settings.host, mac=f"fa:16:3e:77:00:0{i}", ip=ips[n])
        p["port_security_enabled"] = True
        p["firewall"] = fws[n]
        server.ports[ids[n]] = ports[n] = p
    agent = make_agent()
    await agent.start()
    a, b, c = (fw_vm(vms, ids[n], ips[n], ports[n]["mac_address"]) for n in "abc")
    await wait_for(lambda: server.reported_up() >= set(ids.values()), what="ports up")
    log = tmp_path / "served.log"
    server_proc = subprocess.Popen(["ip", "netns", "exec", a.netns, sys.executable, PROBE,
                                    "serve", str(log), "80,81", "53,54"])
    try:
        await wait_for(lambda: log.exists() and "ready" in log.read_text(), what="listener")
        yield Rig(agent, a, b, c, ports, log)
    finally:
        server_proc.kill()
        server_proc.wait()


def udp_from(log: Path, port: int, ip: str) -> int:
    return sum(1 for line in log.read_text().splitlines() if line == f"udp {port} {ip}")


async def test_rules_allow_and_deny_icmp_tcp_udp_and_return_traffic(rig: Rig) -> None:
    a, b, c = rig.a, rig.b, rig.c
    assert await ping(b, a.ip)  # ICMP allowed in; the echo reply returns to b
    assert not await ping(a, b.ip)  # b has no ingress rule: a's request is dropped
    assert await ping(a, c.ip)  # c allows ICMP in
    assert await wait_reach(b, "tcp", a.ip, "80")  # the SYN-ACK and echo come back
    assert not await reach(b, "tcp", a.ip, "81")
    assert await wait_reach(c, "tcp", a.ip, "80")
    assert not await reach(b, "udp", a.ip, "54")


async def test_remote_group_member_gets_in_non_member_does_not(
        rig: Rig, bus: LocalBus, settings: Settings, server: ServerPeer,
        ovs: OvsRuntime) -> None:
    a, b, c = rig.a, rig.b, rig.c
    assert await wait_reach(b, "udp", a.ip, "53")
    assert not await reach(c, "udp", a.ip, "53")
    assert udp_from(rig.log, 53, c.ip) == 0
    base = rig.agent.firewalls.written(f"kept:fw:{a.port_id}")
    before = flow_ages(ovs, "kept:fw:rg:clients")
    await asyncio.sleep(0.2)
    # c joins "clients": only the group's member flows change, and of those only
    # c's are new (the others stay in place, by difference)
    server.groups["clients"] = {"IPv4": [b.ip, c.ip]}
    await bus.cast(agent_topic(settings.host), "sg_members_changed", group_id="clients",
                   members=server.groups["clients"])
    await wait_for(lambda: any(c.ip in f for f in rig.agent.firewalls.written(
        "kept:fw:rg:clients") or []), what="member flow")
    assert rig.agent.firewalls.written(f"kept:fw:{a.port_id}") is base
    after = flow_ages(ovs, "kept:fw:rg:clients")
    assert len(after) > len(before)
    assert sum(1 for age in after if age >= 0.2) == len(before)  # untouched: older
    assert await wait_reach(c, "udp", a.ip, "53")
    server.groups["clients"] = {"IPv4": [c.ip]}
    await bus.cast(agent_topic(settings.host), "sg_members_changed", group_id="clients",
                   members=server.groups["clients"])
    await wait_for(lambda: not any(b.ip in f for f in rig.agent.firewalls.written(
        "kept:fw:rg:clients") or []), what="member gone")
    assert not await reach(b, "udp", a.ip, "53")


async def test_a_stale_member_list_in_a_cast_is_not_trusted(
        rig: Rig, bus: LocalBus, settings: Settings, server: ServerPeer) -> None:
    """Two server workers' casts may arrive out of order: the older list last. The
    agent reads the list instead, so the members it enforces are the committed ones."""
    a, c = rig.a, rig.c
    server.groups["clients"] = {"IPv4": [rig.b.ip, c.ip]}  # committed: c joined
    await bus.cast(agent_topic(settings.host), "sg_members_changed", group_id="clients",
                   members={"IPv4": [rig.b.ip]})  # a worker's older read, arriving last
    await wait_for(lambda: any(c.ip in f for f in rig.agent.firewalls.written(
        "kept:fw:rg:clients") or []), what="c's member flow")
    assert await wait_reach(c, "udp", a.ip, "53")
    assert server.member_reads == ["clients"]
    # A port's details (a bind's read, perhaps older) do not replace a known list.
    rig.agent.on_port_bound({**rig.ports["b"], "firewall": {
        **rig.ports["b"]["firewall"], "remote_members": {"clients": {"IPv4": [rig.b.ip]}}}})
    assert rig.agent.firewalls.members["clients"] == {"IPv4": [rig.b.ip, c.ip]}


async def test_member_reads_of_a_held_group_are_paced(
        rig: Rig, bus: LocalBus, settings: Settings, server: ServerPeer) -> None:
    """While casts keep coming, the gap between reads doubles from
    `sg_members_delay_s` up to `sg_members_read_interval_s`; casts within a gap
    share one read at its end, after the last of them, so the last read sees what
    they announced. After a quiet interval a cast is read at once."""
    c = rig.c
    topic = agent_topic(settings.host)
    await asyncio.sleep(settings.sg_members_read_interval_s)  # quiet since the rig's start
    server.member_reads.clear()
    await bus.cast(topic, "sg_members_changed", group_id="clients")
    await asyncio.sleep(0.02)
    await bus.cast(topic, "sg_members_changed", group_id="clients")
    # The first gap is short (a fixed 1 s one left a small burst's members out).
    await wait_for(lambda: len(server.member_reads) == 2, timeout=0.3, what="the 2nd read")
    casts = 2
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        if casts == 20:
            server.groups["clients"] = {"IPv4": [rig.b.ip, c.ip]}  # committed mid-storm
        await bus.cast(topic, "sg_members_changed", group_id="clients")
        casts += 1
        await asyncio.sleep(0.05)
    await wait_for(lambda: any(c.ip in f for f in rig.agent.firewalls.written(
        "kept:fw:rg:clients") or []), what="c's member flow")
    await asyncio.sleep(2 * settings.sg_members_read_interval_s)  # the last read, then quiet
    reads = len(server.member_reads)
    assert casts >= 20 and 3 <= reads <= 9, (casts, reads)  # gaps .05, .1, .2, .4, .8, 1 s
    assert await wait_reach(c, "udp", rig.a.ip, "53")
    await bus.cast(topic, "sg_members_changed", group_id="clients")  # after a quiet second
    await wait_for(lambda: len(server.member_reads) == reads + 1, timeout=0.5,
                   what="a lone cast read at once")


async def test_a_bind_without_members_is_wired_after_one_read_of_its_groups(
        rig: Rig, server: ServerPeer, settings: Settings, vms: Callable[..., Vm],
        ovs: OvsRuntime) -> None:
    """A bind's push carries no member list (vifwire.server.firewalls): ports whose
    rules name a group the agent does not hold are wired once it read the group,
    one read for all of them, with its member flows in place; the list is forgotten
    with the group's last user here (no more casts would keep it current)."""
    server.member_reads.clear()
    server.groups["ops"] = {"IPv4": [rig.b.ip]}
    rules = [rule("ingress", 17, 53, 53, remote_group="ops", group="dns"),
             rule("egress", group="dns")]
    new: list[PortDetails] = []
    for i, ip in enumerate(("10.77.0.11", "10.77.0.12")):
        port_id = str(uuid.uuid4())
        p = port(port_id, NET, settings.host, mac=f"fa:16:3e:77:00:1{i}", ip=ip)
        wall = firewall(port_id, ["dns"], rules)
        del wall["remote_members"]  # as a bind pushes it
        p.update(port_security_enabled=True, firewall=wall)
        server.ports[port_id] = p
        new.append(p)
        rig.agent.on_port_bound(p)
    for p in new:
        fw_vm(vms, p["port_id"], p["fixed_ips"][0]["ip_address"], p["mac_address"])
    await wait_for(lambda: server.reported_up() >= {p["port_id"] for p in new},
                   what="the new ports up")
    assert server.member_reads == ["ops"]
    assert any(rig.b.ip in f for f in rig.agent.firewalls.written("kept:fw:rg:ops") or [])
    for p in new:
        rig.agent.on_port_unbound(p["port_id"])
    await wait_for(lambda: "ops" not in rig.agent.firewalls.members, what="ops forgotten")
    assert "clients" in rig.agent.firewalls.members  # a's rules still name it


async def test_spoofed_mac_and_ip_are_dropped_an_address_pair_passes(rig: Rig) -> None:
    a, c = rig.a, rig.c
    inside = ["ip", "netns", "exec", c.netns]
    await asyncio.to_thread(sh, *inside, "ip", "addr", "add", "10.77.0.50/24", "dev", "eth0")
    await asyncio.to_thread(sh, *inside, "ip", "addr", "add", "10.77.0.99/24", "dev", "eth0")
    assert await wait_reach(c, "tcp", a.ip, "80", "10.77.0.50")  # the allowed address pair
    assert not await reach(c, "tcp", a.ip, "80", "10.77.0.99")  # not c's
    assert not await reach(c, "tcp", a.ip, "80", rig.b.ip)  # b's address
    assert await wait_reach(c, "tcp", a.ip, "80")
    await asyncio.to_thread(sh, *inside, "ip", "link", "set", "eth0", "address",
                            "fa:16:3e:77:00:99")
    await asyncio.to_thread(sh, *inside, "ip", "neigh", "flush", "dev", "eth0")
    assert not await reach(c, "tcp", a.ip, "80")
    assert not await ping(c, a.ip)


async def test_a_removed_rule_blocks_new_connections(
        rig: Rig, bus: LocalBus, settings: Settings) -> None:
    a, b = rig.a, rig.b
    assert await wait_reach(b, "tcp", a.ip, "80")
    fw = rig.ports["a"]["firewall"]
    fewer = [r for r in fw["rules"] if r["port_range_min"] != 80]
    await bus.cast(agent_topic(settings.host), "firewall_changed",
                   firewalls=[{**fw, "rules": fewer}])
    await wait_for(lambda: not any("tp_dst=80" in f for f in rig.agent.firewalls.written(
        f"kept:fw:{a.port_id}") or []), what="rule removed")
    assert not await reach(b, "tcp", a.ip, "80")
    assert await ping(b, a.ip)  # the others hold


async def blast_denied(rig: Rig, seconds: float) -> subprocess.Popen[bytes]:
    """c sends to a's UDP 54 (no rule allows it) every 10 ms."""
    return subprocess.Popen(["ip", "netns", "exec", rig.c.netns, sys.executable, PROBE,
                             "blast", rig.a.ip, "54", str(seconds)])


async def test_agent_restart_never_lets_a_denied_packet_pass(
        rig: Rig, make_agent: Callable[..., OvsAgent], server: ServerPeer) -> None:
    blast = await blast_denied(rig, 8)
    try:
        await asyncio.sleep(0.5)
        await rig.agent.stop()
        await asyncio.sleep(1.0)  # no agent at all
        second = make_agent()
        await second.start()
        await wait_for(lambda: all(second.firewalls.enforced(vm.port_id)
                                   for vm in (rig.a, rig.b, rig.c)), what="reinstalled")
        assert await wait_reach(rig.b, "tcp", rig.a.ip, "80")
        assert not await reach(rig.b, "tcp", rig.a.ip, "81")
    finally:
        await asyncio.to_thread(blast.wait)
    assert udp_from(rig.log, 54, rig.c.ip) == 0


async def test_vswitchd_kill_never_lets_a_denied_packet_pass(rig: Rig, ovs: OvsRuntime) -> None:
    blast = await blast_denied(rig, 8)
    try:
        await asyncio.sleep(0.5)
        victim = ovs.pid("ovs-vswitchd")
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        await wait_for(lambda: ovs.pid("ovs-vswitchd") is None, what="vswitchd gone")
        await asyncio.to_thread(ovs.start_vswitchd)
        await wait_for(lambda: rig.agent.flow_restores >= 2, timeout=15, what="restored")
        assert await wait_reach(rig.b, "tcp", rig.a.ip, "80")
        assert not await reach(rig.b, "tcp", rig.a.ip, "81")
        assert not await reach(rig.c, "udp", rig.a.ip, "53")
    finally:
        await asyncio.to_thread(blast.wait)
    assert udp_from(rig.log, 54, rig.c.ip) == 0


async def wait_reach(vm: Vm, *args: str, tries: int = 5) -> bool:
    """Reached within a few tries (the machine may be loaded); a denied probe uses
    `reach`, one try of two packets."""
    for _ in range(tries):
        if await reach(vm, *args):
            return True
        await asyncio.sleep(0.3)
    return False


async def test_every_rule_shape_is_accepted_by_ovs(
        rig: Rig, bus: LocalBus, settings: Settings) -> None:
    c = rig.c
    v6 = [FirewallRule(security_group_id="other", direction=d, ethertype="IPv6", protocol=p,
                       port_range_min=lo, port_range_max=hi, remote_ip_prefix=pre,
                       remote_group_id=rg)
          for d, p, lo, hi, pre, rg in [("ingress", 58, 128, None, None, None),
                                        ("ingress", 6, 1000, 1999, "2001:db8::/64", None),
                                        ("egress", 17, None, None, None, "v6group"),
                                        ("ingress", None, None, None, None, "v6group")]]
    shapes = [rule("ingress", 1, 8, 0, group="other"), rule("egress", group="other"),
              rule("ingress", 6, 1, 65535),
              rule("ingress", 17, 5000, 5100, prefix="10.0.0.0/8"), rule("ingress", 47),
              rule("egress", 132, 9, 9, remote_group="clients"), *v6]
    for stateful in (False, True):
        fw = firewall(c.port_id, ["other"], shapes,
                      {"v6group": {"IPv6": ["2001:db8::7", "2001:db8::8"]}},
                      pairs=["10.77.0.50"])
        fw["stateful"] = stateful
        await bus.cast(agent_topic(settings.host), "firewall_changed", firewalls=[fw])
        key = f"kept:fw:{c.port_id}"

        def written(key: str = key, stateful: bool = stateful) -> bool:
            flows = rig.agent.firewalls.written(key) or []
            return any("icmp6" in f for f in flows) and \
                stateful == any("ct(commit" in f for f in flows)

        await wait_for(written, what="written")
        assert rig.agent.firewalls.written("kept:fw:rg:v6group")
        assert await ping(rig.a, c.ip)  # ICMP echo still comes in
        assert await ping(c, rig.a.ip) == stateful  # stateless: no ingress rule for the reply


async def test_a_port_without_port_security_passes_everything(
        rig: Rig, bus: LocalBus, settings: Settings) -> None:
    a, b = rig.a, rig.b
    assert not await ping(a, b.ip)
    fw = {**rig.ports["b"]["firewall"], "port_security_enabled": False, "security_groups": []}
    await bus.cast(agent_topic(settings.host), "firewall_changed", firewalls=[fw])
    await wait_for(lambda: not any("reg5" in f for f in rig.agent.firewalls.written(
        f"kept:fw:{b.port_id}") or ["reg5"]), what="open")
    assert await ping(a, b.ip)
    inside = ["ip", "netns", "exec", b.netns]
    await asyncio.to_thread(sh, *inside, "ip", "addr", "add", "10.77.0.98/24", "dev", "eth0")
    assert await wait_reach(b, "tcp", a.ip, "80", "10.77.0.98")  # any source address
    assert not await reach(b, "tcp", a.ip, "81", "10.77.0.98")  # a's rules still hold


async def test_restart_drops_the_rules_of_ports_gone_meanwhile(
        rig: Rig, make_agent: Callable[..., OvsAgent], server: ServerPeer,
        ovs: OvsRuntime) -> None:
    a, b, c = rig.a, rig.b, rig.c
    assert await wait_reach(c, "tcp", a.ip, "80")
    await rig.agent.stop()
    del server.ports[c.port_id]  # deleted on the server: its VIF stays, unknown
    await asyncio.to_thread(b.unplug)  # gone from the bridge
    second = make_agent()
    await second.start()

    def cookies() -> str:
        return ovs.ofctl("dump-flows", ovs.settings.integration_bridge)

    stale = [f"cookie={group_cookie(port_key(vm.port_id)):#x}," for vm in (b, c)]
    await wait_for(lambda: not any(s in cookies() for s in stale), what="old rules gone")
    await wait_for(lambda: c.dropped(), what="c isolated")
    assert second.firewalls.enforced(a.port_id)
    assert not await reach(c, "tcp", a.ip, "80")
    assert f"cookie={group_cookie(port_key(a.port_id)):#x}," in cookies()


def flow_ages(ovs: OvsRuntime, key: str) -> list[float]:
    """How long ago (s) vswitchd got each flow of `key`."""
    out = ovs.ofctl("dump-flows", ovs.settings.integration_bridge,
                    f"cookie={group_cookie(key):#x}/-1")
    return [float(d) for d in re.findall(r"duration=([\d.]+)s", out)]


async def test_restart_keeps_the_rules_in_place_and_rewrites_what_changed(
        rig: Rig, make_agent: Callable[..., OvsAgent], server: ServerPeer,
        ovs: OvsRuntime) -> None:
    a, b = rig.a, rig.b
    assert await wait_reach(b, "tcp", a.ip, "80")
    await rig.agent.stop()
    # While no agent runs, a loses its TCP 80 rule; nothing else changes.
    fw = rig.ports["a"]["firewall"]
    server.ports[a.port_id] = {**rig.ports["a"], "firewall": {
        **fw, "rules": [r for r in fw["rules"] if r["port_range_min"] != 80]}}
    await asyncio.sleep(1.0)  # the old flows are older than the new agent
    second = make_agent()
    started = time.monotonic()
    await second.start()
    await wait_for(lambda: all(second.firewalls.enforced(vm.port_id)
                               for vm in (a, b, rig.c)), what="enforced")
    since = time.monotonic() - started
    # b's and c's rules, the pipeline's and the groups' were kept, not rewritten
    kept = [port_key(b.port_id), port_key(rig.c.port_id), "kept:fw", "kept:fw:rg:clients"]
    for key in kept:
        assert min(flow_ages(ovs, key)) > since, key
        assert second.firewalls.written(key)  # known as installed
    assert second.firewalls.kept == 4  # just those
    assert max(flow_ages(ovs, port_key(a.port_id))) < since  # a's: rewritten
    assert not await reach(b, "tcp", a.ip, "80")
    assert await wait_reach(b, "udp", a.ip, "53")  # through the kept group flows


async def test_rules_found_are_written_if_the_table_was_restored_since(
        rig: Rig, ovs: OvsRuntime) -> None:
    """What a restarted agent read may be gone by the time it compares (vswitchd
    restarted, someone flushed the table: the flow table restored): then it writes."""
    await rig.agent.stop()
    a = rig.a
    details = rig.ports["a"]
    vlan = 1
    bridge = ovs.settings.integration_bridge
    runtime = OvsRuntime(ovs.settings)
    for restored in (False, True):
        flows = FlowTable(runtime, bridge)
        firewalls = Firewalls(flows, FlowSnapshots(runtime, bridge))
        firewalls.adopt([a.port_id], await firewalls.read(), flows.restores)
        if restored:
            await flows.restore()
        firewalls.learn(details["firewall"])
        await firewalls.ensure(a.port_id, details, a.device, vlan)
        assert (firewalls.kept, firewalls.bundles) == ((0, 1) if restored else (3, 0))
        await firewalls.stop()
        await flows.stop()  # its OpenFlow connection


async def test_rules_kept_are_written_again_at_the_next_restore(
        rig: Rig, ovs: OvsRuntime) -> None:
    """A restore whose bundle was made before a key was kept (vswitchd restarted
    while the agent compared) did not write it: the keys kept since the last
    restore are written again when it reports."""
    await rig.agent.stop()
    a, details = rig.a, rig.ports["a"]
    bridge = ovs.settings.integration_bridge
    runtime = OvsRuntime(ovs.settings)
    flows = FlowTable(runtime, bridge)
    firewalls = Firewalls(flows, FlowSnapshots(runtime, bridge))
    firewalls.adopt([a.port_id], await firewalls.read(), flows.restores)
    firewalls.learn(details["firewall"])
    await firewalls.ensure(a.port_id, details, a.device, 1)
    assert (firewalls.kept, firewalls.bundles) == (3, 0)
    key = port_key(a.port_id)
    ovs.ofctl("del-flows", bridge, f"cookie={group_cookie(key):#x}/-1")  # the new vswitchd's
    firewalls.restored()
    await wait_for(lambda: bool(flow_ages(ovs, key)), what="a's rules written again")
    assert firewalls.bundles == 1
    firewalls.restored()  # a later restore writes them itself
    assert firewalls.bundles == 1
    await firewalls.stop()
    await flows.stop()


async def test_traffic_from_a_trunk_meets_the_ingress_rules(
        rig: Rig, ovs: OvsRuntime, vms: Callable[..., Vm],
        make_agent: Callable[..., OvsAgent]) -> None:
    """A remote VM behind a patch port (as behind patch-tun: VLAN-tagged frames on
    the network's local VLAN) reaches a's allowed ports only; replies go back."""
    vlan = rig.agent.local_vlans()[NET]
    d = vms(str(uuid.uuid4()), "10.77.0.9", "fa:16:3e:77:00:09", plug=False, prefix="fwag")
    assert probe(d, "nocsum", "eth0")
    other, short = f"brx{d.tag[-4:]}", d.tag[-4:]
    bridge = ovs.settings.integration_bridge
    ovs.vsctl("add-br", other, "--", "set", "Bridge", other, "datapath_type=netdev",
              "--", "add-port", other, d.device, f"tag={vlan}",
              "--", "add-port", other, f"pxi{short}", "--", "set", "Interface", f"pxi{short}",
              "type=patch", f"options:peer=pxb{short}",
              "--", "add-port", bridge, f"pxb{short}", "--", "set", "Interface", f"pxb{short}",
              "type=patch", f"options:peer=pxi{short}")
    try:
        await rig.agent.stop()  # again, with that patch port as a trunk
        agent = make_agent(trunks=(f"pxb{short}",))
        await agent.start()
        await wait_for(lambda: agent.firewalls.enforced(rig.a.port_id), what="firewall")
        assert await wait_reach(d, "tcp", rig.a.ip, "80")
        assert not await reach(d, "tcp", rig.a.ip, "81")
        assert not await reach(d, "udp", rig.a.ip, "53")  # not a member of "clients"
        assert await ping(d, rig.a.ip)
        assert not await ping(d, rig.b.ip)
        assert await ping(rig.a, d.ip)  # a's egress; the reply comes in from the patch
    finally:
        ovs.vsctl("--if-exists", "del-port", bridge, f"pxb{short}", "--", "--if-exists",
                  "del-br", other)


def link_local(vm: Vm) -> str:
    out = sh("ip", "-n", vm.netns, "-6", "-o", "addr", "show", "dev", "eth0", "scope",
             "link").stdout
    return out.split("inet6 ")[1].split("/")[0]


async def ping6(vm: Vm, address: str) -> bool:
    done = await asyncio.to_thread(sh, "ip", "netns", "exec", vm.netns, "ping", "-6", "-c", "3",
                                   "-i", "0.2", "-W", "1", f"{address}%eth0", check=False)
    return done.returncode == 0


async def test_ipv6_neighbour_discovery_passes_rules_decide(
        rig: Rig, bus: LocalBus, settings: Settings) -> None:
    a, b = rig.a, rig.b
    target = await wait_for(lambda: "inet6" in sh("ip", "-n", a.netns, "-6", "addr").stdout
                            and link_local(a), what="a's link-local address")
    icmp6 = FirewallRule(security_group_id="web", direction="ingress", ethertype="IPv6",
                         protocol=58, port_range_min=None, port_range_max=None,
                         remote_ip_prefix=None, remote_group_id=None)
    egress6 = FirewallRule(**{**icmp6, "direction": "egress", "protocol": None})
    topic = agent_topic(settings.host)

    async def add(vm: Vm, name: str, rules: list[FirewallRule], table: str) -> None:
        fw = rig.ports[name]["firewall"]
        await bus.cast(topic, "firewall_changed", firewalls=[{**fw, "rules": [*fw["rules"],
                                                                             *rules]}])
        await wait_for(lambda: any("ipv6" in f or "icmp6" in f for f in (
            rig.agent.firewalls.written(f"kept:fw:{vm.port_id}") or []) if table in f),
            what="IPv6 rules")

    await add(b, "b", [egress6], "table=72")
    assert not await ping6(b, target)  # ND passes, but a has no IPv6 ingress rule
    await add(a, "a", [icmp6, egress6], "table=82")
    # NS/NA between their link-local addresses, then the echo and its reply
    assert any([await ping6(b, target) for _ in range(3)])


async def test_a_member_change_moves_only_the_flows_that_changed(
        rig: Rig, ovs: OvsRuntime) -> None:
    """`put_many(in_place=...)` (a remote group's member flows): a new member adds
    its flow, a gone one's is deleted, the others stay as vswitchd has them."""
    await rig.agent.stop()
    runtime = OvsRuntime(ovs.settings)
    flows = FlowTable(runtime, ovs.settings.integration_bridge)
    key = "kept:fw:rg:test-in-place"

    def spec(n: int) -> str:
        return f"table=99,priority=10,ip,nw_src=10.99.0.{n},actions=drop"

    def held() -> set[str]:
        out = ovs.ofctl("dump-flows", ovs.settings.integration_bridge,
                        f"cookie={group_cookie(key):#x}/-1")
        return set(re.findall(r"nw_src=10\.99\.0\.(\d+)", out))

    try:
        await flows.put_many({key: [spec(1), spec(2)]}, in_place=[key])
        assert held() == {"1", "2"}
        await asyncio.sleep(1.1)  # dump-flows gives durations to the millisecond
        await flows.put_many({key: [spec(2), spec(3)]}, in_place=[key])
        assert held() == {"2", "3"}
        ages = sorted(flow_ages(ovs, key))
        assert ages[0] < 1.0 <= ages[1]  # 3 is new, 2 stayed
        await flows.put_many({key: []}, in_place=[key])
        assert held() == set()
    finally:
        await flows.stop()
