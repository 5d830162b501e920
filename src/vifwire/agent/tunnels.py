"""What the tunnel bridge must hold: a pure function of the overlay's state.

Input: the vxlan networks this host holds a local VLAN for (`LocalNet`), and
the remote ports the server announced (l2population `FdbEntry`s). Output
(`Wanted`): one vxlan port per remote host that has ports on a network held
here, and the OpenFlow rules of br-tun in groups (one key each, replaced as a
whole), laid out as Neutron's OVS agent lays out br-tun:

    table 0   from patch-int -> 2; from a vxlan port -> 4; anything else: drop
    table 2   ARP broadcast -> 21; unicast -> 20; multicast/broadcast -> 22
    table 4   tun_id=VNI -> push the network's local VLAN, out to br-int; else drop
    table 20  (l2pop) VLAN + remote MAC -> strip VLAN, set VNI, out the tunnel of
              the MAC's host; else -> 22
    table 21  (ARP responder) a request for a remote port's IPv4 address is
              answered here with its MAC, back out of the port it came in; else -> 22
    table 22  VLAN -> strip VLAN, set VNI, out the tunnels of only the hosts with
              ports on that network; else drop

So broadcast and unknown unicast reach only hosts with ports on the network,
and nothing leaves for a network no remote host shares. Ports are named in
the rules (ovs-ofctl resolves the names), so a tunnel port must exist before a
rule names it and go only after no rule does: the executor's order.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vifwire.messages import FdbEntry

PATCH_INT = "patch-int"  # br-tun's end of the patch to br-int
PATCH_TUN = "patch-tun"  # br-int's end
BASE_KEY = "base"  # the base rules (vifwire.ovs.flows.BASE)

BASE_FLOWS = (
    f"table=0,priority=1,in_port={PATCH_INT},actions=resubmit(,2)",
    "table=0,priority=0,actions=drop",
    "table=2,priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff,actions=resubmit(,21)",
    "table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,20)",
    "table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,22)",
    "table=4,priority=0,actions=drop",
    "table=20,priority=0,actions=resubmit(,22)",
    "table=21,priority=0,actions=resubmit(,22)",
    "table=22,priority=0,actions=drop",
)


@dataclass(frozen=True)
class LocalNet:
    """A vxlan network with ports here: its local VLAN and its VNI."""

    vlan: int
    vni: int


@dataclass(frozen=True)
class Wanted:
    tunnels: dict[str, str]  # vxlan port name -> remote tunnel address
    flows: dict[str, tuple[str, ...]]  # group key -> rules


@functools.lru_cache(maxsize=4096)
def tunnel_name(remote_ip: str) -> str:
    """Neutron's name: "vxlan-" and the remote IPv4 address in hex (fits IFNAMSIZ)."""
    address = ipaddress.ip_address(remote_ip)
    if address.version == 4:
        return f"vxlan-{int(address):08x}"
    return f"vxlan-{int(address) & 0xFFFFFFFF:08x}"  # Neutron hashes v6; 32 bits suffice here


# A remote port's rules, by port id, with what they were made from.
Memo = dict[str, tuple[tuple[object, ...], tuple[str, ...]]]


def plan(local_ip: str, local: Mapping[str, LocalNet], remotes: Iterable[FdbEntry],
         memo: Memo | None = None) -> Wanted:
    """`memo` (kept by the caller between calls) spares rebuilding the rules of
    remote ports that did not change: a storm's casts replan thousands of them."""
    flows: dict[str, tuple[str, ...]] = {BASE_KEY: BASE_FLOWS}
    tunnels: dict[str, str] = {}
    flood: dict[str, set[str]] = {network: set() for network in local}
    seen: Memo = {}
    for entry in remotes:
        net = local.get(entry["network_id"])
        if net is None or entry["local_ip"] == local_ip or entry["network_type"] != "vxlan":
            continue
        name = tunnel_name(entry["local_ip"])
        tunnels[name] = entry["local_ip"]
        flood[entry["network_id"]].add(name)
        port_id = entry["port_id"]
        made_of = (net, name, entry["mac_address"], tuple(entry["ip_addresses"]))
        known = memo.get(port_id) if memo is not None else None
        port_rules = known[1] if known is not None and known[0] == made_of else \
            _port_flows(net, name, entry)
        seen[port_id] = (made_of, port_rules)
        flows[f"port:{port_id}"] = port_rules
    if memo is not None:
        memo.clear()
        memo.update(seen)
    for name in tunnels:
        flows[f"tun:{name}"] = (f"table=0,priority=1,in_port={name},actions=resubmit(,4)",)
    for network, net in local.items():
        # push_vlan + set_field, not mod_vlan_vid: rules go in OpenFlow 1.4 bundles,
        # where setting the VLAN id of an untagged frame pushes no tag.
        rules = [f"table=4,priority=1,tun_id={net.vni},actions=push_vlan:0x8100,"
                 f"set_field:{net.vlan | 0x1000}->vlan_vid,output:{PATCH_INT}"]
        if flood[network]:
            outputs = ",".join(f"output:{name}" for name in sorted(flood[network]))
            rules.append(f"table=22,priority=1,dl_vlan={net.vlan},"
                         f"actions=strip_vlan,set_tunnel:{net.vni},{outputs}")
        flows[f"net:{network}"] = tuple(rules)
    return Wanted(tunnels, flows)


def _port_flows(net: LocalNet, tunnel: str, entry: FdbEntry) -> tuple[str, ...]:
    mac = entry["mac_address"].lower()
    rules = [f"table=20,priority=2,dl_vlan={net.vlan},dl_dst={mac},"
             f"actions=strip_vlan,set_tunnel:{net.vni},output:{tunnel}"]
    mac_hex = "0x" + mac.replace(":", "")
    for ip in entry["ip_addresses"]:
        address = ipaddress.ip_address(ip)
        if address.version != 4:
            continue  # IPv6 neighbour discovery floods (table 22), as in Neutron
        # Turn the request into the reply, in place: Neutron's ARP responder.
        rules.append(
            f"table=21,priority=1,arp,dl_vlan={net.vlan},arp_op=1,arp_tpa={ip},actions="
            "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],"
            f"mod_dl_src:{mac},"
            "load:0x2->NXM_OF_ARP_OP[],"
            "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
            "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"
            f"load:{mac_hex}->NXM_NX_ARP_SHA[],"
            f"load:{int(address):#x}->NXM_OF_ARP_SPA[],"
            "in_port")
    return tuple(rules)
