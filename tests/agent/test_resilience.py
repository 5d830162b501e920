"""Isolation and status survive Open vSwitch: a killed vswitchd, a flushed flow
table, a VIF whose device vanishes and returns. Real OVS, veths and pings.

This module gets its own private OVS (the `ovs` fixture is module-scoped), so
killing its vswitchd disturbs no other test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Callable

import pytest

from vifwire.agent.model import DEAD_VLAN
from vifwire.agent.service import OvsAgent
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import Settings

from .peers import ServerPeer, Vm, port, wait_for
from .test_wiring import wait_tag

pytestmark = pytest.mark.ovs

MakeVm = Callable[..., Vm]


def pid() -> str:
    return str(uuid.uuid4())


def flows(ovs: OvsRuntime) -> str:
    return ovs.ofctl("dump-flows", ovs.settings.integration_bridge)


async def two_dead_two_wired(make_agent: Callable[..., OvsAgent], server: ServerPeer,
                             settings: Settings, vms: MakeVm, ovs: OvsRuntime,
                             octet: int) -> tuple[OvsAgent, list[Vm]]:
    """An agent with two VIFs the server does not know (dead VLAN) and two bound
    to one network; checks the starting point: dead ones isolated, wired ones ping."""
    net = pid()
    bound = [port(pid(), net, settings.host, mac=f"fa:16:3e:{octet:02x}:00:0{i}",
                  ip=f"10.{octet}.0.{i}") for i in (1, 2)]
    for p in bound:
        server.ports[p["port_id"]] = p
    agent = make_agent()
    await agent.start()
    wired = [vms(p["port_id"], p["fixed_ips"][0]["ip_address"], p["mac_address"])
             for p in bound]
    dead = [vms(pid(), f"10.{octet}.0.{i}", f"fa:16:3e:{octet:02x}:00:0{i}") for i in (3, 4)]
    for vm in dead:
        await wait_tag(vm, DEAD_VLAN)
    await wait_for(lambda: server.reported_up() >= {p["port_id"] for p in bound},
                   what="wired ports up")
    await wait_for(lambda: flows(ovs).count("actions=drop") == 3,
                   what="two port drops and the dead VLAN drop")
    assert await asyncio.to_thread(wired[0].ping, wired[1].ip)
    assert not await asyncio.to_thread(dead[0].ping, dead[1].ip, 5)
    return agent, [*wired, *dead]


async def two_dead(vms: MakeVm, ovs: OvsRuntime, octet: int) -> tuple[Vm, Vm]:
    """Two VIFs the server does not know, once a running agent isolated both."""
    d1, d2 = (vms(pid(), f"10.{octet}.0.{i}", f"fa:16:3e:{octet:02x}:00:0{i}") for i in (1, 2))
    for vm in (d1, d2):
        await wait_tag(vm, DEAD_VLAN)
    await wait_for(lambda: flows(ovs).count("actions=drop") == 3, what="drops")
    return d1, d2


async def test_bridge_is_fail_secure(make_agent: Callable[..., OvsAgent],
                                     ovs: OvsRuntime) -> None:
    agent = make_agent()
    await agent.start()
    bridge = ovs.settings.integration_bridge
    assert ovs.vsctl("get", "Bridge", bridge, "fail_mode").strip() == "secure"
    table = flows(ovs)
    assert "priority=0 actions=NORMAL" in table
    assert f"priority=65535,dl_vlan={DEAD_VLAN} actions=drop" in table
    assert agent.flow_restores == 1


@pytest.mark.parametrize("daemon", ["ovs-vswitchd", "ovsdb-server"])
async def test_daemon_kill_keeps_dead_vlan_isolated(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
        vms: MakeVm, ovs: OvsRuntime, daemon: str) -> None:
    agent, (w1, w2, d1, d2) = await two_dead_two_wired(make_agent, server, settings,
                                                       vms, ovs, 31)
    victim = ovs.pid(daemon)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    await wait_for(lambda: ovs.pid(daemon) is None, what=f"{daemon} gone")
    start = ovs.start_vswitchd if daemon == "ovs-vswitchd" else ovs.start_ovsdb
    await asyncio.to_thread(start)
    # Fail secure: whatever a fresh vswitchd does before the agent restored its
    # rules, it forwards nothing; afterwards exactly the old isolation holds.
    # (After an ovsdb-server restart the agent rewrites them all the same.)
    await wait_for(lambda: agent.flow_restores >= 2, timeout=15, what="flows restored")
    assert flows(ovs).count("actions=drop") == 3
    assert not await asyncio.to_thread(d1.ping, d2.ip, 5)
    assert await wait_ping(w1, w2.ip)
    # The agent's OVSDB connection is back: a new VIF is still wired.
    p = port(pid(), agent.local_vlans().popitem()[0], settings.host,
             mac="fa:16:3e:31:00:09", ip="10.31.0.9")
    server.ports[p["port_id"]] = p
    v9 = vms(p["port_id"], "10.31.0.9", p["mac_address"])
    await wait_for(lambda: p["port_id"] in server.reported_up(), timeout=15, what="new VIF up")
    assert await wait_ping(v9, w1.ip)


async def test_flushed_flow_table_is_restored(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
        vms: MakeVm, ovs: OvsRuntime) -> None:
    agent, (w1, w2, d1, d2) = await two_dead_two_wired(make_agent, server, settings,
                                                       vms, ovs, 32)
    ovs.ofctl("del-flows", ovs.settings.integration_bridge)
    await wait_for(lambda: agent.flow_restores == 2, what="flows restored")
    assert flows(ovs).count("actions=drop") == 3
    assert not await asyncio.to_thread(d1.ping, d2.ip, 3)
    assert await wait_ping(w1, w2.ip)


async def test_vif_losing_its_device_is_down_then_up_again(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
        vms: MakeVm, ovs: OvsRuntime) -> None:
    net = pid()
    a, b = (port(pid(), net, settings.host, mac=f"fa:16:3e:33:00:0{i}", ip=f"10.33.0.{i}")
            for i in (1, 2))
    for p in (a, b):
        server.ports[p["port_id"]] = p
    agent = make_agent()
    await agent.start()
    va, vb = vms(a["port_id"], "10.33.0.1", a["mac_address"]), \
        vms(b["port_id"], "10.33.0.2", b["mac_address"])
    await wait_for(lambda: server.reported_up() >= {a["port_id"], b["port_id"]}, what="up")
    vlan = agent.local_vlans()[net]

    await asyncio.to_thread(vb.unlink)
    await wait_for(lambda: b["port_id"] in server.reported_down(), what="b reported down")
    assert server.ports[b["port_id"]]["status"] == "DOWN"
    assert server.ports[a["port_id"]]["status"] == "ACTIVE"
    assert agent.local_vlans()[net] == vlan  # b keeps its VLAN for its return

    await asyncio.to_thread(vb.link)
    await wait_for(lambda: server.ports[b["port_id"]]["status"] == "ACTIVE",
                   what="b reported up again")
    assert len([c for c in server.up_calls if b["port_id"] in c]) == 2
    assert await wait_ping(va, vb.ip)


async def test_dead_vif_keeps_its_drop_flow_across_device_loss(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, vms: MakeVm,
        ovs: OvsRuntime) -> None:
    agent = make_agent()
    await agent.start()
    d1, d2 = await two_dead(vms, ovs, 34)
    await asyncio.to_thread(d2.unlink)
    await asyncio.to_thread(d2.link)
    # The returned device may have a new ofport: its drop flow must follow it.
    ofport = await wait_for(lambda: ovs.vsctl("get", "Interface", d2.device,
                                              "ofport").strip() not in ("-1", "[]")
                            and ovs.vsctl("get", "Interface", d2.device, "ofport").strip(),
                            what="new ofport")
    await wait_for(lambda: f"in_port={ofport} actions=drop" in flows(ovs)
                   or f'in_port="{d2.device}" actions=drop' in flows(ovs),
                   what="drop flow on the returned device")
    assert not await asyncio.to_thread(d1.ping, d2.ip, 3)
    assert agent.device_count == 2


async def wait_ping(vm: Vm, ip: str, attempts: int = 10) -> bool:
    """Ping until it works (ARP and MAC learning start from scratch after a restart)."""
    for _ in range(attempts):
        if await asyncio.to_thread(vm.ping, ip, 1):
            return True
    return False


async def test_restarted_agent_keeps_flows_in_place_and_restores_changed_ones(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, vms: MakeVm,
        ovs: OvsRuntime) -> None:
    """A restart writes no flow when vswitchd holds exactly the agent's rules, and
    rewrites them all when one is missing or a stale one is in the table."""
    bridge = ovs.settings.integration_bridge
    first = make_agent()
    await first.start()
    d1, d2 = await two_dead(vms, ovs, 35)
    await first.stop()
    kept = make_agent()
    await kept.start()
    assert (kept.flow_restores, kept.flows_kept) == (1, 1)
    assert flows(ovs).count("actions=drop") == 3
    await kept.stop()
    # While no agent ran: d2's drop flow deleted, and a stale rule of the agent's
    # (a group of a port long gone) added. Both are differences: all rewritten.
    ovs.ofctl("del-flows", bridge, f"in_port={d2.device}")
    ovs.ofctl("add-flow", bridge, "cookie=0x7677000000000abc,priority=7,arp,actions=drop")
    assert flows(ovs).count("actions=drop") == 3
    fixed = make_agent()
    await fixed.start()
    assert (fixed.flow_restores, fixed.flows_kept) == (1, 0)
    table = flows(ovs)
    assert "0x7677000000000abc" not in table
    assert table.count("actions=drop") == 3
    assert not await asyncio.to_thread(d1.ping, d2.ip, 3)
