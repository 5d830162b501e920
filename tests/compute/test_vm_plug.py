"""VMs as namespaces on a private netdev bridge, plugged as os-vif plugs them."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV6_IFADDR, RTMGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import IFF_PROMISC, IFF_UP

from vifwire.compute import namespaces
from vifwire.compute.plug import RUN_KEY, OvsPlugger
from vifwire.compute.vm import (
    Vm,
    VmSpec,
    create_sync,
    delete_sync,
    list_namespaces,
    ns_name,
    tap_name,
)
from vifwire.ovs.runtime import OvsRuntime

pytestmark = pytest.mark.ovs


def _port_id() -> str:
    return str(uuid.uuid4())


def _link_exists(name: str, netns: str) -> bool:
    with IPRoute(netns=netns, flags=0) as ipr:
        return bool(ipr.link_lookup(ifname=name))


GTXCSUM = """
import array, fcntl, socket, struct
value = array.array("I", [0x16, 0])  # ETHTOOL_GTXCSUM
ifreq = struct.pack("16sP", b"eth0", value.buffer_info()[0])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(sock.fileno(), 0x8946, ifreq)
print(value[1])
"""


def _guest_tx_checksum(namespace: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", GTXCSUM],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def _sysctl(namespace: str, key: str) -> str:
    return subprocess.run(["ip", "netns", "exec", namespace, "sysctl", "-n", key],
                          capture_output=True, text=True, check=True).stdout.strip()


def _guest_link(namespace: str) -> Any:
    # pyroute2's sync API runs its own loop: keep it off the test's loop.
    with IPRoute(netns=namespace, flags=0) as guest:
        return guest.get_links(ifname="eth0")[0]


@pytest.fixture
def ns_prefix(short_id: str) -> str:
    return f"vwt{short_id}-"


@pytest.fixture
async def plugger(ovs: OvsRuntime, short_id: str) -> AsyncIterator[OvsPlugger]:
    async with OvsPlugger(ovs.settings, run_id=f"test-{short_id}") as p:
        yield p


def _external_ids(ovs: OvsRuntime, iface: str) -> dict[str, str]:
    out = json.loads(ovs.vsctl("--format=json", "--columns=external_ids", "list", "Interface",
                               iface))
    kind, pairs = out["data"][0][0]
    assert kind == "map"
    return dict(pairs)


def test_names_fit_ifnamsiz() -> None:
    port = "0123456789abcdef-rest"
    assert tap_name(port) == "tap0123456789a"
    assert ns_name(port) == "vwvm-0123456789a"
    assert len(tap_name(_port_id())) <= 15


async def test_plug_sets_os_vif_external_ids(ovs: OvsRuntime, plugger: OvsPlugger) -> None:
    port, vm_uuid, mac = _port_id(), str(uuid.uuid4()), "fa:16:3e:12:34:56"
    t_plug = await plugger.plug(port, mac, vm_uuid)
    assert t_plug > 0
    tap = tap_name(port)
    assert tap in ovs.vsctl("list-ports", ovs.settings.integration_bridge).split()
    ids = _external_ids(ovs, tap)
    assert ids == {"iface-id": port, "iface-status": "active", "attached-mac": mac,
                   "vm-uuid": vm_uuid, RUN_KEY: plugger.run_id}
    assert await plugger.run_interfaces() == {tap: plugger.run_id}
    await plugger.plug(port, mac, vm_uuid)  # --may-exist: plugging twice is fine
    await plugger.unplug(tap)
    await plugger.unplug(tap)  # --if-exists
    assert tap not in ovs.vsctl("list-ports", ovs.settings.integration_bridge).split()


def _notifications_while(host_netns: str, action: Any) -> list[Any]:
    """The link and IPv6-address notifications `host_netns` saw while `action()` ran
    (and for a second after: a carrier change reaches netlink from a kernel worker)."""
    seen: list[Any] = []
    ready, stop = threading.Event(), threading.Event()

    def listen() -> None:
        # pyroute2's socket is used on the thread that made it.
        with namespaces.entered(host_netns):
            ipr = IPRoute()
        with ipr:
            ipr.bind(groups=RTMGRP_LINK | RTMGRP_IPV6_IFADDR)
            ready.set()
            while not stop.is_set():
                if select.select([ipr], [], [], 0.1)[0]:
                    seen.extend(ipr.get())

    thread = threading.Thread(target=listen)
    thread.start()
    assert ready.wait(10)
    try:
        action()
        time.sleep(1)
    finally:
        stop.set()
        thread.join(10)
    return seen


def test_a_vms_host_end_is_born_up_and_promiscuous_without_ipv6(ns_prefix: str,
                                                                 host_netns: str) -> None:
    spec = VmSpec(_port_id(), "fa:16:3e:00:00:0a", "10.77.0.20", 24, 1450, ns_prefix, host_netns)
    try:
        seen = _notifications_while(host_netns, lambda: create_sync(spec))
    finally:
        delete_sync(spec.namespace, spec.tap, host_netns)
    tap_events = [m for m in seen if m.get_attr("IFLA_IFNAME") == spec.tap
                  or m.get("family") == socket.AF_INET6]
    links = [m for m in tap_events if m["event"] == "RTM_NEWLINK"]
    # Born up and promiscuous (what vswitchd would set when it adds the port), then
    # the carrier: each link notification runs a whole bridge_reconfigure in OVS 3.1.
    assert links and links[0]["flags"] & (IFF_UP | IFF_PROMISC) == IFF_UP | IFF_PROMISC
    # Two, or three when the kernel's link watch reports the guest end's missing
    # carrier before the guest comes up (a race; made down and set up, it was four
    # once vswitchd had turned promiscuous mode on).
    assert len(links) <= 3, [(m["event"], hex(m["flags"])) for m in links]
    # IPv6 was off before the pair had its carrier: it never gave the tap an address.
    assert not [m for m in tap_events if m["event"] == "RTM_NEWADDR"]


async def test_two_vms_ping_through_the_bridge(ovs: OvsRuntime, plugger: OvsPlugger,
                                               ns_prefix: str, host_netns: str) -> None:
    specs = [VmSpec(_port_id(), f"fa:16:3e:00:00:0{i}", f"10.77.0.{10 + i}", 24, 1450, ns_prefix,
                    host_netns) for i in (1, 2)]
    vms = [Vm(s) for s in specs]
    try:
        for vm in vms:
            await vm.create()
            await plugger.plug(vm.spec.port_id, vm.spec.mac, str(uuid.uuid4()),
                               mtu=vm.spec.mtu)
            # What the agent would do: the same local VLAN for the same network.
            ovs.vsctl("set", "Port", vm.tap, "tag=7")
        assert list_namespaces(ns_prefix) == sorted(vm.namespace for vm in vms)
        eth0 = await asyncio.to_thread(_guest_link, vms[0].namespace)
        assert eth0.get("IFLA_ADDRESS") == specs[0].mac
        assert eth0.get("IFLA_MTU") == 1450
        # The guest's checksums are whole (conntrack drops partial ones).
        assert _guest_tx_checksum(vms[0].namespace) == 0
        # IPv6 is off at both ends (as os-vif does for the veths it makes): no
        # link-local chatter flooded to every port, no route churn for the switch.
        assert _sysctl(vms[0].namespace, "net.ipv6.conf.eth0.disable_ipv6") == "1"
        assert _sysctl(host_netns, f"net.ipv6.conf.{vms[0].tap}.disable_ipv6") == "1"
        assert await vms[0].ping(specs[1].ip)
        assert await vms[1].ping(specs[0].ip)
        # Another VLAN is another network: no reply.
        ovs.vsctl("set", "Port", vms[1].tap, "tag=8")
        assert not await vms[0].ping(specs[1].ip, count=2)
    finally:
        for vm in vms:
            await plugger.unplug(vm.tap)
            await vm.delete()
    for vm in vms:
        assert not os.path.exists(f"/var/run/netns/{vm.namespace}")
        assert not await asyncio.to_thread(_link_exists, vm.tap, host_netns)
    await vms[0].delete()  # idempotent
