"""A "VM": a network namespace holding one end of a veth pair.

libvirt gives a guest a tap device named `tap<port_id[:11]>` (Nova's
`get_vif_devname`, sized for IFNAMSIZ) and os-vif plugs that device into br-int.
Here the guest is a namespace `vwvm-<port_id[:11]>` and the tap is the host end
of a veth whose other end is `eth0` inside the namespace, carrying the port's
MAC address, the network's MTU and the port's fixed IPv4 address.

The veth is created with its peer already inside the namespace,
so no temporary name ever exists in the root namespace. Netlink calls block,
so every operation runs in a worker thread; that thread enters a namespace
itself to open a socket there (`namespaces`), never forking a helper.

The host end lives where the switch runs: the root namespace, or `host_netns`
when the private Open vSwitch runs inside a namespace (a simulated host; a
netdev datapath owns the tap "ovs-netdev", so one switch per namespace).

The guest computes its own TCP/UDP checksums, as a VM's NIC hands the host
whole packets: a veth would pass partial ones (TX checksum offload), which the
userspace datapath's conntrack, and so the security-group firewall, marks
invalid and drops.

IPv6 is off at both ends before the pair has a carrier, as os-vif does for
the veth pairs it makes (the guest has only its IPv4 address). With it on, every new
guest sends duplicate-address probes, MLD reports and router solicitations that
the switch floods to every port of the network, and every host end adds IPv6
routes that make the switch re-read the routing table: per VM, work that grows
with the number of ports. Measured on one host, one private vswitchd, 250 VMs
booted and deleted: 12.8-13.6 s of vswitchd CPU with IPv6 on, 4.3-4.7 s off.

The host end is created up and promiscuous (ovs-vswitchd's netdev datapath
turns promiscuous mode on when it adds a port; already on, it changes nothing),
and the pair gets its carrier when the guest end comes up: two link
notifications in the host's namespace per VM, where making it down, setting it
up and vswitchd's promiscuous mode made four. In OVS 3.1 each one runs a whole
bridge_reconfigure, whose cost grows with the ports on the bridge
(bench/vswitchd_links.py counts them).

Deleting removes the host end first (which takes the pair with it at once; a
namespace's devices otherwise vanish asynchronously) and then the namespace.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute, NetlinkError  # type: ignore[import-untyped]
from pyroute2.netlink.rtnl.ifinfmsg import IFF_PROMISC, IFF_UP  # type: ignore[import-untyped]

from vifwire.compute import namespaces
from vifwire.compute.errors import VmError

NS_PREFIX = "vwvm-"
GUEST_IFNAME = "eth0"
LOOPBACK_INDEX = 1  # the first device of every network namespace
HOST_END_FLAGS = IFF_UP | IFF_PROMISC
SIOCETHTOOL, ETHTOOL_STXCSUM = 0x8946, 0x17
T = TypeVar("T")


def tap_name(port_id: str) -> str:
    """Nova's device name for a port: "tap" + the first 11 characters of its id."""
    return ("tap" + port_id)[:14]


def ns_name(port_id: str, prefix: str = NS_PREFIX) -> str:
    return prefix + port_id[:11]


def list_namespaces(prefix: str = NS_PREFIX) -> list[str]:
    try:
        names = os.listdir(namespaces.NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


@dataclass(frozen=True)
class VmSpec:
    port_id: str
    mac: str
    ip: str  # IPv4 address from the port's fixed_ips
    prefixlen: int  # from the subnet's cidr
    mtu: int = 1500
    ns_prefix: str = NS_PREFIX
    host_netns: str | None = None  # where the switch runs; None: the root namespace

    @property
    def namespace(self) -> str:
        return ns_name(self.port_id, self.ns_prefix)

    @property
    def tap(self) -> str:
        return tap_name(self.port_id)


def spec_from_port(port: dict[str, Any], subnets: dict[str, dict[str, Any]], mtu: int,
                   ns_prefix: str = NS_PREFIX, host_netns: str | None = None) -> VmSpec:
    """The VM a Neutron port describes: its first IPv4 fixed IP and that subnet's prefix."""
    for fixed in port.get("fixed_ips", []):
        subnet = subnets.get(fixed.get("subnet_id", ""))
        if subnet and ipaddress.ip_address(fixed["ip_address"]).version == 4:
            prefixlen = ipaddress.ip_network(subnet["cidr"]).prefixlen
            return VmSpec(port["id"], port["mac_address"], fixed["ip_address"], prefixlen,
                          mtu, ns_prefix, host_netns)
    raise VmError(f"port {port['id']} has no IPv4 address on a known subnet")


class Vm:
    """One guest. `create()` builds it, `delete()` removes it, idempotently."""

    def __init__(self, spec: VmSpec, executor: Executor | None = None) -> None:
        self.spec = spec
        self._executor = executor

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    @property
    def tap(self) -> str:
        return self.spec.tap

    async def _in_thread(self, func: Callable[..., T], *args: Any) -> T:
        """Run a netlink step in a thread, and let it finish even if we are cancelled.

        A thread cannot be stopped: cancelling only the wait would let a teardown
        delete the VM while its creation carries on, leaving a namespace behind
        that nothing records any more.
        """
        step = asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
        try:
            return await asyncio.shield(step)
        except asyncio.CancelledError:
            while not step.done():  # a second cancel must not orphan the thread either
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({step})
            raise

    async def create(self) -> None:
        await self._in_thread(create_sync, self.spec)

    async def delete(self) -> None:
        await self._in_thread(delete_sync, self.namespace, self.tap, self.spec.host_netns)

    async def ping(self, target_ip: str, count: int = 3, wait_s: int = 1) -> bool:
        return await ping(self.namespace, target_ip, count, wait_s)


def create_sync(spec: VmSpec) -> None:
    if namespaces.exists(spec.namespace):
        raise VmError(f"namespace {spec.namespace} already exists")
    try:
        namespaces.create(spec.namespace)
        with host_iproute(spec.host_netns) as ipr:
            # The host end is born up and promiscuous, in one link notification
            # (see the module's docstring); the guest end is born down, so the
            # pair has no carrier and IPv6 does not start on the host end before
            # it is turned off, just below.
            ipr.link("add", ifname=spec.tap, kind="veth", mtu=spec.mtu,
                     flags=HOST_END_FLAGS, change=HOST_END_FLAGS,
                     peer={"ifname": GUEST_IFNAME, "net_ns_fd": spec.namespace,
                           "address": spec.mac, "mtu": spec.mtu})
        with namespaces.entered(spec.host_netns):
            _disable_ipv6(spec.tap)
        with namespaces.entered(spec.namespace):
            guest = IPRoute()
            _tx_checksum_off(GUEST_IFNAME)
            _disable_ipv6(GUEST_IFNAME)
        with guest:
            guest.link("set", index=LOOPBACK_INDEX, state="up")
            eth0 = _index(guest, GUEST_IFNAME)
            guest.addr("add", index=eth0, address=spec.ip, prefixlen=spec.prefixlen)
            guest.link("set", index=eth0, state="up")
    except (OSError, NetlinkError) as exc:
        with contextlib.suppress(VmError):
            delete_sync(spec.namespace, spec.tap, spec.host_netns)
        raise VmError(f"cannot build VM {spec.namespace} ({spec.tap}): {exc}") from exc


def _disable_ipv6(device: str) -> None:
    """sysctl net.ipv6.conf.<device>.disable_ipv6=1, in the calling thread's namespace."""
    with open(f"/proc/sys/net/ipv6/conf/{device}/disable_ipv6", "w") as conf:
        conf.write("1")


def _tx_checksum_off(device: str) -> None:
    """ethtool -K <device> tx off, in the calling thread's namespace."""
    value = array.array("I", [ETHTOOL_STXCSUM, 0])
    address, _ = value.buffer_info()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, struct.pack("16sP", device.encode(), address))


def delete_sync(namespace: str, tap: str | None, host_netns: str | None = None) -> None:
    try:
        if tap:
            _delete_link(tap, host_netns)
        namespaces.remove(namespace)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise VmError(f"cannot remove VM {namespace}: {exc}") from exc
    except NetlinkError as exc:
        raise VmError(f"cannot remove VM {namespace}: {exc}") from exc


def delete_tap_sync(tap: str, host_netns: str | None = None) -> bool:
    return _delete_link(tap, host_netns)


def _delete_link(ifname: str, host_netns: str | None) -> bool:
    with host_iproute(host_netns) as ipr:
        try:
            ipr.link("del", ifname=ifname)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise
        return True


def host_iproute(host_netns: str | None) -> IPRoute:
    """Netlink in the namespace that holds the taps (and runs the switch)."""
    with namespaces.entered(host_netns):
        return IPRoute()


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise VmError(f"device {ifname} vanished")
    return int(found[0])


async def ping(namespace: str, target_ip: str, count: int = 3, wait_s: int = 1) -> bool:
    """Whether any of `count` pings from inside `namespace` got a reply within `wait_s`."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", namespace, "ping", "-n", "-q", "-c", str(count), "-i", "0.2",
        "-W", str(wait_s), target_ip,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0
