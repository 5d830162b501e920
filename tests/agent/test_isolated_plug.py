"""A VIF plugged by the compute emulator is isolated until the agent wires it.

The plug (vifwire.compute.plug, as os-vif's isolate_vif) adds the Port with
tag 4095. Untagged, NORMAL would treat it as a trunk: a guest that tags its
frames with another network's local VLAN would talk to that network. The traffic
test runs with the agent stopped, so nothing but the plug's own tag isolates.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from vifwire.agent.model import DEAD_VLAN
from vifwire.agent.service import OvsAgent
from vifwire.compute.plug import OvsPlugger
from vifwire.compute.vm import tap_name
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import OvsSettings, Settings
from vifwire.trace import Stage

from .peers import ServerPeer, Vm, port, sh, wait_for

pytestmark = pytest.mark.ovs


@dataclass
class NovaVm(Vm):
    """A VM whose host end is named as Nova names it, for OvsPlugger.plug."""

    @property
    def device(self) -> str:
        return tap_name(self.port_id)

    def send_tagged(self, vlan: int, count: int = 5) -> None:
        """Send broadcast frames tagged with VLAN `vlan` from inside the guest."""
        frame = (b"\xff" * 6 + bytes.fromhex(self.mac.replace(":", "")) + b"\x81\x00"
                 + vlan.to_bytes(2, "big") + b"\x08\x06" + b"\x00" * 46)
        code = ("import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW);"
                "s.bind(('eth0', 0))\n"
                f"for _ in range({count}): s.send(bytes.fromhex('{frame.hex()}'))")
        sh("ip", "netns", "exec", self.netns, sys.executable, "-c", code)


def quiet(vm: Vm) -> None:
    """No IPv6 on the VIF's host end: what it sends goes straight to the guest."""
    sh(*vm.switch_side, "sysctl", "-qw", f"net.ipv6.conf.{vm.device}.disable_ipv6=1")


def rx_packets(vm: Vm) -> int:
    """Frames the guest's eth0 received (whatever their VLAN)."""
    out = sh("ip", "netns", "exec", vm.netns, "cat", "/sys/class/net/eth0/statistics/rx_packets")
    return int(out.stdout)


async def leaks(vm_a: Vm, vm_b: NovaVm, vlan_a: int, *,
                expected: bool = False) -> tuple[bool, bool]:
    """(A's broadcasts reach B, B's frames tagged with A's VLAN reach A); when
    leaks are `expected`, waits a while for both before answering."""
    b_before, a_before = rx_packets(vm_b), rx_packets(vm_a)
    await asyncio.to_thread(vm_a.ping, "10.0.9.77", 3)  # ARP requests: broadcast
    await asyncio.to_thread(vm_b.send_tagged, vlan_a)

    def seen() -> tuple[bool, bool]:
        return rx_packets(vm_b) > b_before, rx_packets(vm_a) >= a_before + 5

    if expected:
        await wait_for(lambda: all(seen()), timeout=5, what="frames across")
    else:
        await asyncio.sleep(0.5)
    return seen()


async def test_a_just_plugged_vif_reaches_no_other_network_before_the_agent_wires_it(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
        ovs: OvsRuntime, ovs_settings: OvsSettings,
        vms: Callable[..., Vm]) -> None:
    net_a, net_b = str(uuid.uuid4()), str(uuid.uuid4())
    a = port(str(uuid.uuid4()), net_a, settings.host, mac="fa:16:3e:00:01:01")
    b = port(str(uuid.uuid4()), net_b, settings.host, mac="fa:16:3e:00:01:02")
    server.ports.update({a["port_id"]: a, b["port_id"]: b})
    agent = make_agent()
    await agent.start()
    vm_a = vms(a["port_id"], "10.0.9.1", a["mac_address"])
    quiet(vm_a)
    await wait_for(lambda: a["port_id"] in server.reported_up(), what="A wired")
    vlan_a = agent.local_vlans()[net_a]
    await agent.stop()  # from here on, only the plug's tag isolates

    vm_b = NovaVm(ovs, uuid.uuid4().hex[:6], b["port_id"], b["mac_address"], "10.0.9.2")
    try:
        vm_b.create()
        quiet(vm_b)
        async with OvsPlugger(ovs_settings, run_id=f"test-{uuid.uuid4().hex[:6]}") as plugger:
            await plugger.plug(b["port_id"], b["mac_address"], vm_b.vm_uuid)
            assert await asyncio.to_thread(vm_b.tag_in_ovsdb) == DEAD_VLAN
            # Plain traffic does not pass, nor frames the guest tags with
            # network A's VLAN, nor A's broadcasts.
            assert not await asyncio.to_thread(vm_b.ping, "10.0.9.1")
            assert await leaks(vm_a, vm_b, vlan_a) == (False, False)
            # Control: the same port untagged (a plug without isolation) is a
            # trunk: it hears network A and can talk into it.
            ovs.vsctl("clear", "Port", vm_b.device, "tag")
            assert await leaks(vm_a, vm_b, vlan_a, expected=True) == (True, True)
            ovs.vsctl("set", "Port", vm_b.device, f"tag={DEAD_VLAN}")
            assert await leaks(vm_a, vm_b, vlan_a) == (False, False)

            # A re-plug of the existing Port keeps the tag it has.
            ovs.vsctl("set", "Port", vm_b.device, "tag=99")
            await plugger.plug(b["port_id"], b["mac_address"], vm_b.vm_uuid)
            assert await asyncio.to_thread(vm_b.tag_in_ovsdb) == 99
            ovs.vsctl("set", "Port", vm_b.device, f"tag={DEAD_VLAN}")

        # A new agent finds B in the dead VLAN: 4095 is not "wired", B gets
        # network B's VLAN and is reported up.
        server.up_calls.clear()
        agent = make_agent()
        await agent.start()
        await wait_for(lambda: b["port_id"] in server.reported_up(), what="B wired")
        vlan_b = agent.local_vlans()[net_b]
        assert vlan_b not in (DEAD_VLAN, vlan_a)
        assert await asyncio.to_thread(vm_b.tag_in_ovsdb) == vlan_b
        assert not await asyncio.to_thread(vm_b.dropped)
        assert any(e["stage"] == Stage.WIRED and e["port"] == b["port_id"]
                   for e in agent.tracer.events)
        # Still apart from network A, whatever the guest tags.
        assert not await asyncio.to_thread(vm_b.ping, "10.0.9.1")
        assert await leaks(vm_a, vm_b, vlan_a) == (False, False)
    finally:
        vm_b.destroy()


async def test_a_vif_plugged_while_the_agent_runs_is_retagged_from_the_dead_vlan(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
        ovs: OvsRuntime, ovs_settings: OvsSettings) -> None:
    net = str(uuid.uuid4())
    p = port(str(uuid.uuid4()), net, settings.host, mac="fa:16:3e:00:01:03")
    server.ports[p["port_id"]] = p
    agent = make_agent()
    await agent.start()
    vm = NovaVm(ovs, uuid.uuid4().hex[:6], p["port_id"], p["mac_address"], "10.0.9.3")
    try:
        vm.create()
        async with OvsPlugger(ovs_settings, run_id=f"test-{uuid.uuid4().hex[:6]}") as plugger:
            await plugger.plug(p["port_id"], p["mac_address"], vm.vm_uuid)
        await wait_for(lambda: p["port_id"] in server.reported_up(), what="wired")
        assert await asyncio.to_thread(vm.tag_in_ovsdb) == agent.local_vlans()[net]
        assert not await asyncio.to_thread(vm.dropped)
    finally:
        vm.destroy()
