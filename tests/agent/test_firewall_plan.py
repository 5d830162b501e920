"""The firewall planner (vifwire.agent.firewall): pure, no OVS."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace

from vifwire.agent.firewall import (
    BASE_FLOWS,
    FwPort,
    Signature,
    conjunction_id,
    firewall_reg,
    group_flows,
    port_flows,
    port_masks,
    signatures,
)
from vifwire.messages import FirewallRule, PortFirewall, remote_groups


def rule(direction: str = "ingress", protocol: int | None = None, low: int | None = None,
         high: int | None = None, *, ethertype: str = "IPv4", group: str | None = None,
         prefix: str | None = None) -> FirewallRule:
    return FirewallRule(security_group_id="sg", direction=direction, ethertype=ethertype,
                        protocol=protocol, port_range_min=low, port_range_max=high,
                        remote_ip_prefix=prefix, remote_group_id=group)


def fw_port(rules: list[FirewallRule], *, secured: bool = True, stateful: bool = True,
            pairs: list[dict[str, str]] | None = None) -> FwPort:
    fw = PortFirewall(port_id="p1", port_security_enabled=secured, security_groups=["sg"],
                      stateful=stateful, rules=rules, remote_members={},
                      allowed_address_pairs=pairs or [])  # type: ignore[typeddict-item]
    return FwPort("p1", "tap1", 7, 12, "fa:16:3e:00:00:01", ("10.0.0.5", "2001:db8::5"), fw)


def conj(fw: PortFirewall) -> dict[Signature, int]:
    return {sig: conjunction_id(sig) for sig in signatures(fw)}


def flows_of(p: FwPort) -> list[str]:
    return port_flows(p, conj(p.firewall))


def test_without_port_security_only_the_network_is_marked() -> None:
    flows = flows_of(fw_port([rule()], secured=False))
    assert flows == ["priority=100,in_port=tap1,actions=set_field:12->reg6,resubmit(,73)"]
    assert signatures(fw_port([rule(group="g")], secured=False).firewall) == []


def test_anti_spoofing_allows_only_own_macs_and_addresses() -> None:
    p = fw_port([], pairs=[{"ip_address": "10.0.9.0/24", "mac_address": "fa:16:3e:00:00:99"}])
    flows = flows_of(p)
    sends = [f for f in flows if f.startswith("table=71") and "priority=90" in f]
    sources = sorted(re.search(r"(?:nw_src|ipv6_src|arp_spa)=([^,]+)", f).group(1)  # type: ignore[union-attr]
                     for f in sends)
    assert sources == sorted(["10.0.0.5", "10.0.0.5", "2001:db8::5", "fe80::f816:3eff:fe00:1",
                              "10.0.9.0/24", "10.0.9.0/24", "fe80::f816:3eff:fe00:99"])
    assert all("reg5=7" in f and "dl_src=fa:16:3e:00:00:" in f for f in sends)
    # the pair's address only with the pair's MAC
    assert all("dl_src=fa:16:3e:00:00:99" in f for f in sends if "10.0.9.0/24" in f)
    # neighbour advertisements only for its own IPv6 addresses
    na = [f for f in flows if "icmp_type=136" in f]
    assert sorted(f.split("nd_target=")[1].split(",")[0] for f in na) == \
        sorted(["2001:db8::5", "fe80::f816:3eff:fe00:1", "fe80::f816:3eff:fe00:99"])
    # ingress for both MACs: from the local pipeline, and from a trunk only
    assert sum("dl_dst=fa:16:3e:00:00:99" in f for f in flows) == 1
    trunked = flows_of(replace(p, trunks=("patch-tun",)))
    assert [f for f in trunked if "dl_vlan" in f] == [
        f"priority=50,in_port=patch-tun,dl_vlan=12,dl_dst={mac},actions=set_field:7->reg5,"
        f"set_field:12->reg6,strip_vlan,resubmit(,81)"
        for mac in ("fa:16:3e:00:00:01", "fa:16:3e:00:00:99")]


def test_dhcp_servers_and_router_advertisements_of_a_vm_are_dropped() -> None:
    drops = [f for f in BASE_FLOWS if f.startswith("table=71") and f.endswith("actions=drop")]
    assert any("udp,tp_src=67" in f for f in drops)
    assert any("udp6,tp_src=547" in f for f in drops)
    assert any("icmp6,icmp_type=134" in f for f in drops)
    assert "table=71,priority=0,actions=drop" in drops  # anything else unknown


def test_rules_match_protocols_ports_icmp_and_prefixes() -> None:
    p = fw_port([rule("ingress", 6, 22, 22, prefix="192.168.0.0/16"),
                 rule("egress", 17, 1000, 1999),
                 rule("ingress", 1, 8, 0),
                 rule("ingress", 1, ethertype="IPv6"),
                 rule("ingress", 47)])
    flows = flows_of(p)
    assert any("table=82" in f and "tcp" in f and "tp_dst=22" in f and
               "nw_src=192.168.0.0/16" in f and "ct_state=+trk+new-est" in f and
               "ct(commit" in f for f in flows)
    udp = [f for f in flows if f.startswith("table=72") and "udp" in f]
    assert len(udp) == 2 * len(port_masks(1000, 1999))
    assert any("reg5=7,icmp,icmp_type=8,icmp_code=0" in f for f in flows)
    assert any("icmp6" in f and "table=82" in f for f in flows)
    assert any("ip,nw_proto=47" in f for f in flows)


def test_port_ranges_become_exact_masks() -> None:
    for low, high in [(1, 65535), (1000, 1999), (22, 22), (0, 1), (80, 8080), (65534, 65535)]:
        covered = set()
        for match in port_masks(low, high):
            value, _, mask = match.partition("/")
            v, m = int(value, 0), int(mask, 0) if mask else 0xFFFF
            covered |= {port for port in range(0x10000) if port & m == v}
        assert covered == set(range(low, high + 1)), (low, high)


def test_remote_groups_cost_members_plus_rules() -> None:
    rules = [rule("ingress", 6, 22, 22, group="g"), rule("ingress", 17, 53, 53, group="g"),
             rule("ingress", None, group="g"), rule("egress")]
    p = fw_port(rules)
    assert remote_groups(p.firewall) == ["g"]
    ids = conj(p.firewall)
    assert len(ids) == 6  # 3 rules x (new, established)
    few = group_flows("g", {"IPv4": [f"10.1.0.{i}" for i in range(2)]}, ids)
    many = group_flows("g", {"IPv4": [f"10.1.{i // 250}.{i % 250}" for i in range(500)]}, ids)
    assert len(few) == 2 + 6 and len(many) == 500 + 6  # members + one accept per conjunction
    members = [f for f in many if "conjunction(" in f]
    assert all(f.count("conjunction(") == 6 and "reg5" not in f for f in members)
    first = {int(i) for f in members for i in re.findall(r"conjunction\((\d+),1/2\)", f)}
    second = {int(i) for f in flows_of(p) for i in re.findall(r"conjunction\((\d+),2/2\)", f)}
    accepts = {int(i) for f in many for i in re.findall(r"conj_id=(\d+)", f)}
    assert first == second == accepts == set(ids.values())
    # the port's own flows name no member; another group's flows none of its conjunctions
    assert not any("10.1." in f for f in flows_of(p))
    assert group_flows("h", {"IPv4": ["10.9.9.9"]}, ids) == []
    commits = [f for f in many if "conj_id=" in f and "ct(commit" in f]
    assert len(commits) == 3


def test_ports_sharing_a_rule_share_its_conjunction() -> None:
    rules = [rule("ingress", 6, 22, 22, group="g"), rule("ingress", 17, 53, 53, group="h")]
    a, b = fw_port(rules), fw_port(list(reversed(rules)))
    assert conj(a.firewall) == conj(b.firewall)
    assert sorted(flows_of(a)) == sorted(flows_of(b))
    assert conjunction_id(signatures(a.firewall)[0], 1) != conjunction_id(
        signatures(a.firewall)[0])


def test_stateless_rules_use_no_conntrack() -> None:
    p = fw_port([rule("ingress", 6, 80, 80), rule("egress", group="g")], stateful=False)
    flows = flows_of(p) + group_flows("g", {"IPv4": ["10.0.0.9"]}, conj(p.firewall))
    assert not any("ct(" in f or "ct_state" in f for f in flows)
    assert "table=81,priority=60,reg5=7,ip,actions=ct_clear,resubmit(,82)" in flows


def test_registers_are_stable_and_nonzero() -> None:
    assert firewall_reg("p1") == firewall_reg("p1") != firewall_reg("p2")
    assert firewall_reg("p1") != firewall_reg("p1", 1)
    assert all(0 < firewall_reg(str(i)) < 2 ** 31 for i in range(1000))


def test_the_planner_loads_no_ovs_library() -> None:
    code = ("import sys, vifwire.agent.firewall; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ovs', 'ovsdbapp')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
