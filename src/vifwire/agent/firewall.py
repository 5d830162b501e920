"""A port's stateful firewall as OpenFlow rules: a pure function, no I/O.

In the spirit of Neutron's openvswitch firewall driver, on the NORMAL pipeline of
br-int. Registers: reg5 = the port's firewall id (`FwPort.reg`, from its port id),
reg6 = the conntrack zone = the network's local VLAN.

    table 0   in_port=<VIF with a firewall> -> reg5, reg6, to 71 (prio 100)
              in_port=<VIF, port security off> -> reg6, to 73 (prio 100)
              from a trunk (patch-tun), VLAN-tagged, for a local firewall port's
              MAC -> reg5, reg6, strip VLAN, to 81 (prio 50; only from a trunk:
              a VIF without rules must not reach another VLAN by tagging its
              frames); else as before (NORMAL)
    table 71  egress anti-spoofing: ARP, IPv4, IPv6 only from the port's MACs and
              addresses (fixed IPs, allowed address pairs, the MACs' link-local);
              DHCP client, RS/NS/MLD and NA for its own addresses pass; DHCP
              server replies and router advertisements from the VM are dropped;
              IP -> conntrack (zone reg6) -> 72; anything else is dropped
    table 72  egress rules: invalid dropped, replies and related pass, a rule's
              match passes (new: committed) -> 73; else dropped
    table 73  accepted: to a local firewall port's MAC on the same VLAN -> its
              ingress (reg5 := that port, 81); else NORMAL
    table 81  ingress: ARP, ND/RA/MLD, DHCP replies -> 94; IP -> conntrack -> 82
    table 82  ingress rules, as 72 -> 94; else dropped
    table 94  reg5 -> output to that port

Rules match twice: `+new-est` (commit, then accept) and `+est-rel-rpl`, so one
connection's packets are checked by both ends' rules even though the two ends
share the network's zone; `+est+rpl` and `+rel` pass, `+inv` is dropped.
Remote-group rules are conjunctions, one per rule shape and conntrack state
(`Signature`, its id a hash of it): per remote group and host, one flow per
member address carrying `conjunction(id, 1/2)` of every conjunction naming that
group, and each port's rules add their protocol/port match for their reg5 as
`conjunction(id, 2/2)`; so flows grow with members + rules, and the member
flows (`group_flows`) are shared by the host's ports: a member change rewrites
them and nothing else.
Stateless groups (`stateful` false) match without conntrack (and clear the
state the sender's side gave a packet).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from vifwire.messages import FirewallRule, PortFirewall

T_EGRESS, T_EGRESS_RULES, T_ACCEPTED, T_INGRESS, T_INGRESS_RULES, T_OUTPUT = 71, 72, 73, 81, 82, 94
ZONE = "zone=NXM_NX_REG6[0..15]"
CT_NEW, CT_EST = "+trk+new-est", "+trk+est-rel-rpl"
# ND, RA and MLD a port may receive; of those, what it may send (RS, NS, MLD).
ND_IN = (130, 131, 132, 133, 134, 135, 136, 143)
ND_OUT = (130, 131, 132, 133, 135, 143)
RULE_PRIORITY, CONJ_PRIORITY = 71, 70  # plain rules above conjunctions (both accept)

# The pipeline's own rules, independent of ports.
BASE_FLOWS: tuple[str, ...] = (
    f"table={T_EGRESS},priority=100,udp,tp_src=67,actions=drop",  # a VM's DHCP server
    f"table={T_EGRESS},priority=100,udp6,tp_src=547,actions=drop",
    f"table={T_EGRESS},priority=100,icmp6,icmp_type=134,actions=drop",  # a VM's RA
    f"table={T_EGRESS},priority=0,actions=drop",
    f"table={T_EGRESS_RULES},priority=100,ct_state=+trk+inv,actions=drop",
    f"table={T_EGRESS_RULES},priority=90,ct_state=+trk+est+rpl-inv,actions=resubmit(,{T_ACCEPTED})",
    f"table={T_EGRESS_RULES},priority=90,ct_state=+trk+rel-inv,actions=resubmit(,{T_ACCEPTED})",
    f"table={T_EGRESS_RULES},priority=0,actions=drop",
    f"table={T_ACCEPTED},priority=0,actions=NORMAL",
    f"table={T_INGRESS},priority=100,arp,actions=resubmit(,{T_OUTPUT})",
    *(f"table={T_INGRESS},priority=100,icmp6,icmp_type={t},actions=resubmit(,{T_OUTPUT})"
      for t in ND_IN),
    f"table={T_INGRESS},priority=100,udp,tp_src=67,tp_dst=68,actions=resubmit(,{T_OUTPUT})",
    f"table={T_INGRESS},priority=100,udp6,tp_src=547,tp_dst=546,actions=resubmit(,{T_OUTPUT})",
    f"table={T_INGRESS},priority=50,ip,actions=ct(table={T_INGRESS_RULES},{ZONE})",
    f"table={T_INGRESS},priority=50,ipv6,actions=ct(table={T_INGRESS_RULES},{ZONE})",
    f"table={T_INGRESS},priority=0,actions=drop",
    f"table={T_INGRESS_RULES},priority=100,ct_state=+trk+inv,actions=drop",
    f"table={T_INGRESS_RULES},priority=90,ct_state=+trk+est+rpl-inv,"
    f"actions=resubmit(,{T_OUTPUT})",
    f"table={T_INGRESS_RULES},priority=90,ct_state=+trk+rel-inv,actions=resubmit(,{T_OUTPUT})",
    f"table={T_INGRESS_RULES},priority=0,actions=drop",
    f"table={T_OUTPUT},priority=0,actions=drop",
)

_PROTO_NAMES = {(4, 1): "icmp", (4, 6): "tcp", (4, 17): "udp", (4, 132): "sctp",
                (6, 58): "icmp6", (6, 1): "icmp6", (6, 6): "tcp6", (6, 17): "udp6",
                (6, 132): "sctp6"}
_PORTED = {6, 17, 132}


class Signature(NamedTuple):
    """One conjunction: a remote-group rule's shape and conntrack state (new: the
    accept commits; est: it does not; none: a stateless group's)."""

    group: str
    direction: str
    ethertype: str
    protocol: int | None
    port_range_min: int | None
    port_range_max: int | None
    state: str


@dataclass(frozen=True)
class FwPort:
    """What a port's rules are made from, besides its groups' members."""

    port_id: str
    ofport: str  # in_port/output: the Interface name, or its number (a reopen)
    reg: int  # reg5 value, unique among this host's firewall ports
    vlan: int  # local VLAN: the conntrack zone
    mac: str
    fixed_ips: tuple[str, ...]
    firewall: PortFirewall
    trunks: tuple[str, ...] = ()  # ports carrying VLAN-tagged traffic (patch-tun)


def firewall_reg(port_id: str, salt: int = 0) -> int:
    """A port's reg5 value: stable across agent restarts (so a restarted agent's
    rules never mix with the old ones'), nonzero; callers probe `salt` on a clash."""
    digest = hashlib.blake2b(f"{port_id}/{salt}".encode(), digest_size=4).digest()
    return (int.from_bytes(digest) & 0x7FFFFFFF) or 1


def secured(fw: PortFirewall | None) -> bool:
    return fw is not None and fw["port_security_enabled"]


def port_flows(p: FwPort, conjunctions: Mapping[Signature, int]) -> list[str]:
    """Every rule of the port but its remote groups' (`group_flows`); `conjunctions`
    gives the id of each of its `signatures`."""
    fw = p.firewall
    if not fw["port_security_enabled"]:
        return [f"priority=100,in_port={p.ofport},"
                f"actions=set_field:{p.vlan}->reg6,resubmit(,{T_ACCEPTED})"]
    reg = f"reg5={p.reg}"
    to_egress = (f"priority=100,in_port={p.ofport},actions=set_field:{p.reg}->reg5,"
                 f"set_field:{p.vlan}->reg6,resubmit(,{T_EGRESS})")
    flows = [to_egress, f"table={T_OUTPUT},priority=100,{reg},actions=output:{p.ofport}"]
    into = f"set_field:{p.reg}->reg5,set_field:{p.vlan}->reg6"
    pairs = _allowed(p)
    for mac in sorted({m for m, _ in pairs}):
        flows += [f"priority=50,in_port={trunk},dl_vlan={p.vlan},dl_dst={mac},"
                  f"actions={into},strip_vlan,resubmit(,{T_INGRESS})" for trunk in p.trunks]
        flows.append(f"table={T_ACCEPTED},priority=100,reg6={p.vlan},dl_dst={mac},"
                     f"actions=set_field:{p.reg}->reg5,resubmit(,{T_INGRESS})")
        flows += _spoofing(reg, mac, [a for m, a in pairs if m == mac], fw["stateful"])
    if not fw["stateful"]:
        # ct_clear: the sender's conntrack state must not let a reply in here.
        flows += [f"table={T_INGRESS},priority=60,{reg},{eth},"
                  f"actions=ct_clear,resubmit(,{T_INGRESS_RULES})" for eth in ("ip", "ipv6")]
    flows += _rule_flows(p, conjunctions)
    return list(dict.fromkeys(flows))  # two groups may hold the same rule


def signatures(fw: PortFirewall) -> list[Signature]:
    """The conjunctions the port's remote-group rules take part in, sorted."""
    if not fw["port_security_enabled"]:
        return []
    states = ("new", "est") if fw["stateful"] else ("none",)
    return sorted({Signature(r["remote_group_id"], r["direction"], r["ethertype"],
                             r["protocol"], r["port_range_min"], r["port_range_max"], state)
                   for r in fw["rules"] if r["remote_group_id"] for state in states},
                  key=repr)


def group_flows(group: str, members: Mapping[str, Sequence[str]],
                conjunctions: Mapping[Signature, int]) -> list[str]:
    """The rules of one remote group, shared by every port of the host: one flow
    per member address and (direction, ethertype) carrying the first clause of
    each conjunction naming the group, and each conjunction's accept."""
    by_kind: dict[tuple[str, str], list[str]] = {}
    flows = []
    for sig, conj in sorted(conjunctions.items(), key=lambda item: item[1]):
        if sig.group != group:
            continue
        by_kind.setdefault((sig.direction, sig.ethertype), []).append(
            f"conjunction({conj},1/2)")
        table, next_table = _tables(sig.direction)
        eth = "ip" if sig.ethertype == "IPv4" else "ipv6"
        commit = f"ct(commit,{ZONE})," if sig.state == "new" else ""
        flows.append(f"table={table},priority={CONJ_PRIORITY},conj_id={conj},{eth},"
                     f"actions={commit}resubmit(,{next_table})")
    for (direction, ethertype), actions in sorted(by_kind.items()):
        table, _ = _tables(direction)
        field = _address_field(ethertype, direction)
        eth = "ip" if ethertype == "IPv4" else "ipv6"
        for address in sorted(set(members.get(ethertype, ()))):
            flows.append(f"table={table},priority={CONJ_PRIORITY},{eth},{field}={address},"
                         f"actions={','.join(actions)}")
    return flows


def conjunction_id(sig: Signature, salt: int = 0) -> int:
    """A conjunction's id from its shape: the same across agent restarts, so a
    restarted agent's rules never take part in another conjunction of the old
    agent's; callers probe `salt` on a clash."""
    digest = hashlib.blake2b(f"{sig!r}/{salt}".encode(), digest_size=4).digest()
    return int.from_bytes(digest) or 1


# -- the parts -------------------------------------------------------------


def _allowed(p: FwPort) -> list[tuple[str, str]]:
    """(MAC, address or CIDR) the port may send as."""
    mac = p.mac.lower()
    pairs = [(mac, ip) for ip in p.fixed_ips]
    pairs += [((pair.get("mac_address") or mac).lower(), pair["ip_address"])
              for pair in p.firewall.get("allowed_address_pairs", [])]
    macs = {m for m, _ in pairs} | {mac}
    pairs += [(m, _link_local(m)) for m in sorted(macs)]
    return pairs


def _spoofing(reg: str, mac: str, addresses: Iterable[str], stateful: bool) -> list[str]:
    src = f"{reg},dl_src={mac}"
    accept = f"resubmit(,{T_ACCEPTED})"
    track = f"ct(table={T_EGRESS_RULES},{ZONE})" if stateful else \
        f"resubmit(,{T_EGRESS_RULES})"
    flows = [f"table={T_EGRESS},priority=95,{src},udp,tp_src=68,tp_dst=67,actions={accept}",
             f"table={T_EGRESS},priority=95,{src},udp6,tp_src=546,tp_dst=547,actions={accept}"]
    flows += [f"table={T_EGRESS},priority=95,{src},icmp6,icmp_type={t},actions={accept}"
              for t in ND_OUT]
    for address in addresses:
        if _version(address) == 4:
            flows.append(f"table={T_EGRESS},priority=90,{src},arp,arp_sha={mac},"
                         f"arp_spa={address},actions={accept}")
            flows.append(f"table={T_EGRESS},priority=90,{src},ip,nw_src={address},"
                         f"actions={track}")
        else:
            flows.append(f"table={T_EGRESS},priority=95,{src},icmp6,icmp_type=136,"
                         f"nd_target={address},actions={accept}")
            flows.append(f"table={T_EGRESS},priority=90,{src},ipv6,ipv6_src={address},"
                         f"actions={track}")
    return flows


def _rule_flows(p: FwPort, conjunctions: Mapping[Signature, int]) -> list[str]:
    fw = p.firewall
    reg = f"reg5={p.reg}"
    flows = []
    for rule in fw["rules"]:
        if rule["remote_group_id"]:
            continue
        table, next_table = _tables(rule["direction"])
        remote = ""
        if rule["remote_ip_prefix"]:
            remote = f",{_address_field(rule['ethertype'], rule['direction'])}=" \
                     f"{rule['remote_ip_prefix']}"
        for match in _protocol_matches(rule):
            flows += _accepting(table, RULE_PRIORITY, f"{reg},{match}{remote}", next_table,
                                fw["stateful"])
    for rule in fw["rules"]:
        if not rule["remote_group_id"]:
            continue
        table, _ = _tables(rule["direction"])
        for state in ("new", "est") if fw["stateful"] else ("none",):
            conj = conjunctions[Signature(rule["remote_group_id"], rule["direction"],
                                          rule["ethertype"], rule["protocol"],
                                          rule["port_range_min"], rule["port_range_max"],
                                          state)]
            ct = {"new": f"ct_state={CT_NEW},", "est": f"ct_state={CT_EST},"}.get(state, "")
            flows += [f"table={table},priority={CONJ_PRIORITY},{ct}{reg},{match},"
                      f"actions=conjunction({conj},2/2)" for match in _protocol_matches(rule)]
    return flows


def _accepting(table: int, priority: int, match: str, next_table: int,
               stateful: bool) -> list[str]:
    head = f"table={table},priority={priority}"
    if not stateful:
        return [f"{head},{match},actions=resubmit(,{next_table})"]
    return [f"{head},ct_state={CT_NEW},{match},actions=ct(commit,{ZONE}),"
            f"resubmit(,{next_table})",
            f"{head},ct_state={CT_EST},{match},actions=resubmit(,{next_table})"]


def _tables(direction: str) -> tuple[int, int]:
    if direction == "ingress":
        return T_INGRESS_RULES, T_OUTPUT
    return T_EGRESS_RULES, T_ACCEPTED


def _address_field(ethertype: str, direction: str) -> str:
    end = "src" if direction == "ingress" else "dst"
    return f"nw_{end}" if ethertype == "IPv4" else f"ipv6_{end}"


def _protocol_matches(rule: FirewallRule) -> list[str]:
    """The match of a rule's protocol and ports (or ICMP type and code): one or
    more alternatives (a port range becomes bitmasks)."""
    version = 4 if rule["ethertype"] == "IPv4" else 6
    proto = rule["protocol"]
    if proto is None:
        return ["ip" if version == 4 else "ipv6"]
    name = _PROTO_NAMES.get((version, proto))
    if name is None:
        return [f"{'ip' if version == 4 else 'ipv6'},nw_proto={proto}"]
    low, high = rule["port_range_min"], rule["port_range_max"]
    if name in ("icmp", "icmp6"):
        match = name
        if low is not None:
            match += f",icmp_type={low}"
            if high is not None:
                match += f",icmp_code={high}"
        return [match]
    if proto in _PORTED and low is not None and (low, high) != (0, 0xFFFF):
        return [f"{name},tp_dst={m}" for m in port_masks(low, high if high is not None else low)]
    return [name]


def port_masks(low: int, high: int) -> list[str]:
    """The range low..high of 16-bit ports as value/mask matches (fewest blocks)."""
    if low == high:
        return [str(low)]
    out = []
    while low <= high:
        size = low & -low if low else 0x10000
        while low + size - 1 > high:
            size //= 2
        out.append(f"{low:#x}/{0xFFFF & ~(size - 1):#x}")
        low += size
    return out


@functools.lru_cache(maxsize=4096)
def _version(address: str) -> int:
    """4 or 6, of an address or CIDR (cached: every port's rules ask again at start)."""
    return ipaddress.ip_network(address, strict=False).version


@functools.lru_cache(maxsize=4096)
def _link_local(mac: str) -> str:
    """The EUI-64 IPv6 link-local address of `mac`."""
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    iid = int.from_bytes(bytes(eui))
    return str(ipaddress.IPv6Address((0xFE80 << 112) | iid))
