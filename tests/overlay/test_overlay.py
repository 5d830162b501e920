"""The overlay between hosts, proven by traffic (issue 9 item 4).

Three hosts: A has a VM on "blue" and one on "red", B one on blue, C one on
red; blue and red have the same CIDR. Blue's VMs ping each other across the
underlay, red's too; blue's VM on A cannot reach red's address on C, and
nothing of blue reaches C. The underlay carries UDP 4789 with the network's
VNI; ARP for a remote port is answered on its own host (nothing crosses);
broadcast goes only to hosts with ports on the network. A deleted port takes
its flows, and the last one the tunnel, away from the other hosts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agent.peers import Vm, sh, wait_for
from vifwire.agent.overlay import Overlay
from vifwire.agent.tunnels import tunnel_name

from .conftest import Cloud
from .rig import Capture, Host, eventually_pings, ping

pytestmark = pytest.mark.ovs
BROADCAST = "ff:ff:ff:ff:ff:ff"


@pytest.fixture
def vms() -> Iterator[list[Vm]]:
    made: list[Vm] = []
    yield made
    for vm in made:
        vm.destroy()


async def boot(cloud: Cloud, vms: list[Vm], network: dict[str, Any], host: Host,
               ip: str) -> Vm:
    port = await cloud.port(network, host.name, ip)
    vm = Vm(host.runtime, uuid.uuid4().hex[:6], port["id"], port["mac_address"], ip)
    vms.append(vm)
    vm.create()
    vm.plug()
    return vm


def overlay(host: Host) -> Overlay:
    assert host.agent is not None and host.agent.overlay is not None
    return host.agent.overlay


async def wait_active(cloud: Cloud, port_id: str, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while (await cloud.api.get(f"/v2.0/ports/{port_id}")).json()["port"]["status"] \
                != "ACTIVE":
            await asyncio.sleep(0.02)


async def pair(cloud: Cloud, vms: list[Vm], prefix: str) -> tuple[dict[str, Any], Vm, Vm]:
    """A network with a VM on host A (.11) and one on B (.12), ACTIVE, known to A."""
    a, b = cloud.hosts["a"], cloud.hosts["b"]
    network = await cloud.network("blue", f"{prefix}.0/24")
    a1 = await boot(cloud, vms, network, a, f"{prefix}.11")
    b1 = await boot(cloud, vms, network, b, f"{prefix}.12")
    for vm in (a1, b1):
        await wait_active(cloud, vm.port_id)
    await wait_for(lambda: b1.port_id in overlay(a).remote_ports(), what="A learns b1")
    return network, a1, b1


def flood_rule(host: Host, vni: int) -> str:
    lines = [line for line in host.flows().splitlines()
             if "table=22" in line and f"{vni:#x}->NXM_NX_TUN_ID" in line]
    assert len(lines) == 1, host.flows()
    return lines[0]


@pytest.mark.parametrize("cloud", ["local", "amqp"], indirect=True)
async def test_overlay_between_three_hosts(cloud: Cloud, vms: list[Vm]) -> None:
    a, b, c = cloud.hosts["a"], cloud.hosts["b"], cloud.hosts["c"]
    blue = await cloud.network("blue", "10.77.0.0/24")
    red = await cloud.network("red", "10.77.0.0/24")
    assert blue["mtu"] == red["mtu"] == 1450  # 1500 - 50 of VXLAN over IPv4
    blue_vni, red_vni = blue["provider:segmentation_id"], red["provider:segmentation_id"]

    a1 = await boot(cloud, vms, blue, a, "10.77.0.11")
    b1 = await boot(cloud, vms, blue, b, "10.77.0.12")
    a2 = await boot(cloud, vms, red, a, "10.77.0.21")
    c2 = await boot(cloud, vms, red, c, "10.77.0.13")
    for vm in (a1, b1, a2, c2):
        await wait_active(cloud, vm.port_id)

    # l2pop: each host learns exactly the remote ports of the networks it has.
    await wait_for(lambda: overlay(a).remote_ports().keys() == {b1.port_id, c2.port_id},
                   what="A learns b1 and c2")
    await wait_for(lambda: overlay(b).remote_ports().keys() == {a1.port_id}, what="B: a1")
    await wait_for(lambda: overlay(c).remote_ports().keys() == {a2.port_id}, what="C: a2")
    for host in (a, b, c):
        await wait_for(overlay(host).idle.is_set, what="br-tun written")
    assert overlay(a).tunnels() == {tunnel_name(b.local_ip): b.local_ip,
                                    tunnel_name(c.local_ip): c.local_ip}
    assert overlay(b).tunnels() == {tunnel_name(a.local_ip): a.local_ip}
    assert overlay(c).tunnels() == {tunnel_name(a.local_ip): a.local_ip}
    # Broadcast of blue leaves A for B only, red's for C only.
    blue_flood = flood_rule(a, blue_vni)
    assert tunnel_name(b.local_ip) in blue_flood and tunnel_name(c.local_ip) not in blue_flood
    red_flood = flood_rule(a, red_vni)
    assert tunnel_name(c.local_ip) in red_flood and tunnel_name(b.local_ip) not in red_flood

    assert await eventually_pings(a1.netns, b1.ip), "blue: A -> B"
    assert await eventually_pings(c2.netns, a2.ip), "red: C -> A"
    assert not await ping(a1.netns, c2.ip, count=2), "blue reached red's VM on C"

    async with Capture(cloud.underlay) as capture:
        sh("ip", "-n", a1.netns, "neigh", "flush", "all")
        assert await ping(a1.netns, b1.ip)
        icmp = await capture.wait_to(b, vni=blue_vni, inner_type=0x0800)
        assert icmp[0]["src"] == a.local_ip and icmp[0]["dst"] == b.local_ip
        # b1's address was answered by A's ARP responder: no request crossed.
        assert not [p for p in capture.packets if p.get("arp_tpa") == b1.ip]
        # An address nobody has: its ARP request floods blue's hosts, B only.
        assert not await ping(a1.netns, "10.77.0.99")
        await capture.wait_to(b, vni=blue_vni, inner_dst=BROADCAST, arp_tpa="10.77.0.99")
        # The same for red, from C: to A only.
        assert not await ping(c2.netns, "10.77.0.98")
        await capture.wait_to(a, vni=red_vni, inner_dst=BROADCAST, arp_tpa="10.77.0.98")
    assert not capture.to(c, vni=blue_vni), "blue's traffic reached C"
    assert not capture.to(b, vni=red_vni), "red's traffic reached B"
    assert not capture.to(a, arp_tpa="10.77.0.99"), "a host got its own broadcast back"

    # The agents report their tunnel address; the server reads it from there.
    agents = (await cloud.api.get("/v2.0/agents")).json()["agents"]
    by_host = {agent["host"]: agent["configurations"] for agent in agents}
    for host in (a, b, c):
        assert by_host[host.name]["tunneling_ip"] == host.local_ip
        assert by_host[host.name]["tunnel_types"] == ["vxlan"]

    # b1 deleted: A forgets it, and with it its only reason for a tunnel to B.
    answer = await cloud.api.delete(f"/v2.0/ports/{b1.port_id}")
    assert answer.status_code == 204
    await wait_for(lambda: b1.port_id not in overlay(a).remote_ports(), what="A forgets b1")
    await wait_for(lambda: tunnel_name(b.local_ip) not in overlay(a).tunnels(),
                   what="A drops the tunnel to B")
    await wait_for(overlay(a).idle.is_set, what="A's br-tun written")
    assert b1.mac not in a.flows()
    assert tunnel_name(b.local_ip) not in a.runtime.vsctl("list-ports", "br-tun")
    assert tunnel_name(c.local_ip) in a.runtime.vsctl("list-ports", "br-tun")
    # ...and B, whose VIF stays plugged but is no port any more, has no blue left.
    await wait_for(lambda: not overlay(b).tunnels(), what="B drops its tunnel to A")
    assert await eventually_pings(c2.netns, a2.ip), "red still works"


async def test_agent_restart_keeps_the_overlay_and_catches_up(cloud: Cloud,
                                                              vms: list[Vm]) -> None:
    """A's agent stops; meanwhile B gets a port (the push to A finds nobody). The
    restarted agent's full sync brings it, and its first write replaces br-tun
    in one bundle: a ping running through the restart loses nothing."""
    a, b = cloud.hosts["a"], cloud.hosts["b"]
    blue, a1, b1 = await pair(cloud, vms, "10.78.0")
    assert await eventually_pings(a1.netns, b1.ip)

    pinging = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", a1.netns, "ping", "-c", "200", "-i", "0.05", "-W", "1", b1.ip,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert a.agent is not None
    await a.agent.stop()
    b2 = await boot(cloud, vms, blue, b, "10.78.0.13")
    await wait_active(cloud, b2.port_id)
    await a.start_agent(cloud.bus)
    await wait_for(lambda: b2.port_id in overlay(a).remote_ports(), what="A's sync brings b2")
    await wait_for(lambda: overlay(a).idle.is_set() and overlay(a).writes > 0,
                   what="A's br-tun rewritten")
    assert pinging.returncode is None, "the ping ended before the restart did"
    out, _ = await pinging.communicate()
    assert " 0% packet loss" in out.decode(), out.decode()
    assert await eventually_pings(a1.netns, b2.ip), "b2, learnt at the sync"


async def test_vswitchd_restart_restores_the_tunnel_bridge(cloud: Cloud, vms: list[Vm]) -> None:
    """br-tun is fail secure: a restarted vswitchd forwards nothing between hosts
    until the agent's flow table put every rule back, and then all of it works."""
    a = cloud.hosts["a"]
    blue, a1, b1 = await pair(cloud, vms, "10.79.0")
    await wait_for(overlay(a).idle.is_set, what="A's br-tun written")
    assert await eventually_pings(a1.netns, b1.ip)
    restores = overlay(a).bridge.restores

    victim = a.runtime.pid("ovs-vswitchd")
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    await wait_for(lambda: a.runtime.pid("ovs-vswitchd") is None, what="vswitchd gone")
    a.runtime.start_vswitchd()
    # br-phy's device is vswitchd's: its tunnel address is the host's to put back.
    sh("ip", "-n", a.netns, "addr", "replace", f"{a.local_ip}/24", "dev", "br-phy")
    sh("ip", "-n", a.netns, "link", "set", "br-phy", "up")
    await wait_for(lambda: overlay(a).bridge.restores > restores, timeout=20,
                   what="br-tun's rules restored")
    assert await eventually_pings(a1.netns, b1.ip), "blue across hosts after the restart"
    assert flood_rule(a, blue["provider:segmentation_id"])


async def test_security_groups_hold_across_hosts(cloud: Cloud, vms: list[Vm]) -> None:
    """The firewall over VXLAN: a1 (A) and b1 (B) are in the project's default
    group, b2 (B) in a group with no ingress rules. Members reach each other
    across hosts; b2 reaches nobody (the default group lets in members only) and
    nobody reaches b2. Once b2 joins the default group too, A learns its address
    (`sg_members_changed` across hosts) and lets it in."""
    a, b = cloud.hosts["a"], cloud.hosts["b"]
    blue, a1, b1 = await pair(cloud, vms, "10.80.0")
    answer = await cloud.api.post("/v2.0/security-groups",
                                  json={"security_group": {"name": "no-ingress"}})
    assert answer.status_code == 201, answer.text
    other = answer.json()["security_group"]
    port = await cloud.post("ports", {
        "network_id": blue["id"], "fixed_ips": [{"ip_address": "10.80.0.13"}],
        "binding:host_id": b.name, "device_owner": "compute:nova",
        "device_id": str(uuid.uuid4()), "security_groups": [other["id"]]})
    b2 = Vm(b.runtime, uuid.uuid4().hex[:6], port["id"], port["mac_address"], "10.80.0.13")
    vms.append(b2)
    b2.create()
    b2.plug()
    await wait_active(cloud, b2.port_id)
    await wait_for(lambda: b2.port_id in overlay(a).remote_ports(), what="A learns b2")

    assert await eventually_pings(a1.netns, b1.ip), "members across hosts"
    assert not await ping(b2.netns, a1.ip, count=2), "a non-member got into A's member"
    assert not await ping(a1.netns, b2.ip, count=2), "b2's group lets nothing in"

    answer = await cloud.api.put(f"/v2.0/ports/{b2.port_id}", json={"port": {
        "security_groups": [other["id"], *(await cloud.api.get(
            f"/v2.0/ports/{a1.port_id}")).json()["port"]["security_groups"]]}})
    assert answer.status_code == 200, answer.text
    assert await eventually_pings(b2.netns, a1.ip), "b2, now a member, into a1 on A"
