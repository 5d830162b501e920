"""The OpenFlow encoder says what ovs-ofctl says, byte for byte.

ovs-ofctl (`-O OpenFlow14 --bundle add-flows`) is pointed at a fake switch on a
unix socket that records every message; each flow mod it sent must equal ours
for the same line (but the transaction id). The lines are the agent's own: the
firewall planner's rules for ports of every kind, its base rules, the agent's
and br-tun's."""

from __future__ import annotations

import asyncio
import re
import struct
import subprocess
from pathlib import Path

import pytest

from vifwire.agent import service, tunnels
from vifwire.agent.firewall import BASE_FLOWS, FwPort, Signature, group_flows, port_flows
from vifwire.messages import FdbEntry, FirewallRule, PortFirewall
from vifwire.ovs import openflow as of
from vifwire.ovs.model import Flow

PORTS = {"tap1": 1, "patch-tun": 2, "patch-int": 3, "vxlan-0a000002": 4}


def rule(direction: str, ethertype: str = "IPv4", protocol: int | None = None,
         low: int | None = None, high: int | None = None, prefix: str | None = None,
         group: str | None = None) -> FirewallRule:
    return FirewallRule(security_group_id="sg", direction=direction, ethertype=ethertype,
                        protocol=protocol, port_range_min=low, port_range_max=high,
                        remote_ip_prefix=prefix, remote_group_id=group)


RULES = [rule("egress"), rule("egress", "IPv6"), rule("ingress", group="g1"),
         rule("ingress", "IPv6", group="g1"), rule("ingress", protocol=6, low=1000, high=1999),
         rule("ingress", protocol=17, low=53, high=53, prefix="10.9.0.0/16"),
         rule("ingress", protocol=1, low=8, high=0), rule("ingress", "IPv6", 58, 128),
         rule("ingress", protocol=132, low=80, high=80), rule("ingress", protocol=47),
         rule("ingress", "IPv6", 6, prefix="2001:db8::/32"),
         rule("egress", protocol=6, low=22, high=22, group="g1")]


def firewall(stateful: bool = True, secured: bool = True) -> PortFirewall:
    return PortFirewall(port_id="p1", port_security_enabled=secured, security_groups=["sg"],
                        stateful=stateful, rules=RULES if secured else [],
                        remote_members={"g1": {"IPv4": ["10.0.0.7"], "IPv6": ["2001:db8::7"]}},
                        allowed_address_pairs=[{"ip_address": "10.0.0.128/25",
                                                "mac_address": "fa:16:3e:00:00:99"}])


def corpus() -> list[str]:
    conj = {}
    for i, state in enumerate(("new", "est", "none")):
        for direction, eth, proto, low, high in (("ingress", "IPv4", None, None, None),
                                                 ("ingress", "IPv6", None, None, None),
                                                 ("egress", "IPv4", 6, 22, 22)):
            conj[Signature("g1", direction, eth, proto, low, high, state)] = 100 + i * 10 + \
                len(conj)
    lines = [*BASE_FLOWS, *service.BASE_FLOWS, service._drop_spec("7")]
    for fw in (firewall(), firewall(stateful=False), firewall(secured=False)):
        port = FwPort("p1", "1", 12345, 3, "fa:16:3e:00:00:01",
                      ("10.0.0.5", "2001:db8::5"), fw, ("patch-tun",))
        lines += port_flows(port, conj)
    lines += group_flows("g1", {"IPv4": ["10.0.0.7", "10.0.0.8"], "IPv6": ["2001:db8::7"]}, conj)
    entry = FdbEntry(port_id="r1", network_id="n1", network_type="vxlan",
                     segmentation_id=1001, local_ip="10.0.0.2", host="h2",
                     mac_address="fa:16:3e:00:00:42", ip_addresses=["10.1.0.4", "2001:db8::4"])
    wanted = tunnels.plan("10.0.0.1", {"n1": tunnels.LocalNet(vlan=3, vni=1001)}, [entry])
    lines += [flow for flows in wanted.flows.values() for flow in flows]
    flows = [Flow(0x7678000000000000 + i, line) for i, line in enumerate(lines)]
    return [*(f"add {f.line()}" for f in flows), *(f.delete_line() for f in flows),
            "delete cookie=0x7677000000000000/0xffff000000000000",
            "delete cookie=0x7678632535ed0817/-1"]


def by_number(line: str) -> str:
    for name, number in PORTS.items():
        line = re.sub(rf"in_port={name}(?=,|$)", f"in_port={number}", line)
        line = line.replace(f"output:{name}", f"output:{number}")
    return line


async def _record(socket: Path, lines: list[str]) -> list[bytes]:
    """The flow mods ovs-ofctl sends for `lines`, through a fake switch."""
    inner: list[bytes] = []

    async def switch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer(reader, writer)
        finally:
            writer.close()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readexactly(8)
            except asyncio.IncompleteReadError:
                return
            version, kind, length, xid = struct.unpack("!BBHI", head)
            body = await reader.readexactly(length - 8)
            reply = b""
            if kind == of.OFPT_HELLO:
                reply = struct.pack("!BBHI", version, kind, 8, xid)
            elif kind == of.OFPT_BUNDLE_CONTROL:
                bundle_id, control, flags = struct.unpack("!IHH", body[:8])
                reply = struct.pack("!BBHIIHH", version, kind, 16, xid, bundle_id, control + 1,
                                    flags)
            elif kind == of.OFPT_BUNDLE_ADD_MESSAGE:
                inner.append(body[8:])
            elif kind == of.OFPT_BARRIER_REQUEST:
                reply = struct.pack("!BBHI", version, of.OFPT_BARRIER_REPLY, 8, xid)
            writer.write(reply)
            await writer.drain()

    server = await asyncio.start_unix_server(switch, str(socket))
    try:
        proc = await asyncio.create_subprocess_exec(
            "ovs-ofctl", "-O", "OpenFlow14", "--no-names", "--bundle", "add-flows",
            f"unix:{socket}", "-", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate("\n".join(lines).encode()), 30)
        assert proc.returncode == 0, err.decode()
    finally:
        server.close()
        await server.wait_closed()
    return inner


def without_xid(message: bytes) -> bytes:
    return message[:4] + message[8:]


async def test_every_rule_of_the_agent_encodes_as_ovs_ofctl_does(tmp_path: Path) -> None:
    lines = [by_number(line) for line in corpus()]
    theirs = await _record(tmp_path / "switch.sock", lines)
    assert len(theirs) == len(lines)
    mismatched = [line for line, ref in zip(lines, theirs, strict=True)
                  if without_xid(of.flow_mod(line, 0, PORTS.__getitem__)) != without_xid(ref)]
    assert mismatched == []


def test_names_are_resolved_by_the_lookup() -> None:
    named = of.flow_mod("add priority=1,in_port=tap1,actions=output:patch-tun", 9,
                        PORTS.__getitem__)
    numbered = of.flow_mod("add priority=1,in_port=1,actions=output:2", 9, PORTS.__getitem__)
    assert named == numbered


@pytest.mark.parametrize("line", [
    "add priority=1,actions=learn(table=10)",
    "add priority=1,metadata=1,actions=drop",
    "modify priority=1,actions=drop",
    "add priority=1,ip,actions=ct(nat)",
    "delete table=3",
    "add priority=1",
    "add table=256,priority=1,actions=drop",
    "add priority=1,ip,nw_src=10.0.0.300,actions=drop",
])
def test_a_rule_outside_the_vocabulary_is_refused_before_sending(line: str) -> None:
    with pytest.raises(of.Unsupported):
        of.flow_mod(line, 1, PORTS.__getitem__)


def test_an_unknown_port_name_is_the_lookups_to_report() -> None:
    def lookup(name: str) -> int:
        raise of.UnknownPort(name)

    with pytest.raises(of.UnknownPort):
        of.flow_mod("add priority=1,in_port=tap9,actions=drop", 1, lookup)
