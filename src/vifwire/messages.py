"""The shapes of what the server and the agents tell each other over the bus.

Server -> agent, topic `agent.<host>` (casts):
    port_bound(port: PortDetails)      a port was bound to this host (or changed)
    port_unbound(port_id: str)         the port was deleted or bound elsewhere
    resync()                           read this host's ports again (a cast may be lost)
    fdb_add(entries: list[FdbEntry])   remote ports now ACTIVE on a network this host
                                       has ports on (l2population; upsert by port id)
    fdb_remove(entries: list[FdbGone]) remote ports gone from the host they name
    firewall_changed(firewalls: list[PortFirewall])
                                       a rule of a group these ports use changed (or their
                                       groups / port security did): replace their firewall
    sg_members_changed(group_id: str)  the member addresses of a group that a rule of a
                                       port on this host names as remote_group_id changed;
                                       the agent reads the list (get_group_members): casts
                                       of several server workers may arrive out of order,
                                       a read made after a cast is at least as new (an
                                       older server also sent `members`, ignored)

Agent -> server, topic `server`:
    call get_host_ports(host) -> list[PortDetails]        full sync at agent start
    call get_port_details(host, port_id) -> PortDetails | None   VIF arrived before the bind
    call ports_up(host, port_ids) -> list[str]     ports that went ACTIVE
    call ports_down(host, port_ids) -> list[str]   ports that went DOWN
    call get_host_fdb(host) -> list[FdbEntry]      full sync: the remote ACTIVE ports of
                                                   every vxlan network the host has ports on
    call get_group_members(host, group_id) -> dict[str, list[str]]
                                                   a group's member addresses by ethertype,
                                                   as committed now
    cast report_state(agent: AgentState)           heartbeat
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class FixedIp(TypedDict):
    subnet_id: str
    ip_address: str


class PortDetails(TypedDict):
    port_id: str
    mac_address: str
    network_id: str
    network_type: str  # vxlan | vlan | flat
    segmentation_id: int | None
    physical_network: str | None
    mtu: int
    admin_state_up: bool
    fixed_ips: list[FixedIp]
    device_owner: str
    device_id: str
    host: str
    status: str  # the server's current status: DOWN | ACTIVE | BUILD | ERROR
    # Always sent by the server; NotRequired so older senders (tests, benches) still fit.
    port_security_enabled: NotRequired[bool]
    security_groups: NotRequired[list[str]]  # group ids; [] without port security
    # The port's firewall, pushed with its details so the plug path needs no RPC
    # (issue 10); absent from older senders: the agent then enforces nothing.
    firewall: NotRequired[PortFirewall]


class FirewallRule(TypedDict):
    """One rule of a port's groups, as an agent filters with it (issue 10 item 3)."""

    security_group_id: str
    direction: str  # ingress | egress
    ethertype: str  # IPv4 | IPv6
    protocol: int | None  # the IP protocol number; None: any
    port_range_min: int | None  # a port, or an ICMP type
    port_range_max: int | None  # a port, or an ICMP code
    remote_ip_prefix: str | None  # normalized (network address)
    remote_group_id: str | None


class AddressPair(TypedDict):
    ip_address: str  # an address or a CIDR
    mac_address: str


class PortFirewall(TypedDict):
    """A port's firewall: its groups' rules and the addresses of the members of the
    groups those rules name (`vifwire.server.security_groups.port_firewall`), plus
    what anti-spoofing lets the port send as (its MAC and fixed IPs, and its allowed
    address pairs)."""

    port_id: str
    port_security_enabled: bool
    security_groups: list[str]
    stateful: bool
    rules: list[FirewallRule]
    # group id -> ethertype -> addresses; absent from a bind's push (the agent
    # reads a group it does not hold yet: vifwire.server.firewalls)
    remote_members: NotRequired[dict[str, dict[str, list[str]]]]
    allowed_address_pairs: NotRequired[list[AddressPair]]


def remote_groups(fw: PortFirewall) -> list[str]:
    """The groups whose members this port's rules need, sorted (none without port
    security)."""
    if not fw["port_security_enabled"]:
        return []
    return sorted({r["remote_group_id"] for r in fw["rules"] if r["remote_group_id"]})


class AgentState(TypedDict):
    host: str
    agent_type: str
    binary: str
    topic: str
    configurations: dict[str, object]
    start_flag: bool  # true on the first report after the agent started


class FdbEntry(TypedDict):
    """A remote port as l2population announces it: where its MAC lives."""

    port_id: str
    network_id: str
    network_type: str  # vxlan
    segmentation_id: int  # the VNI
    mac_address: str
    ip_addresses: list[str]
    host: str
    local_ip: str  # the tunnel address of `host` (its agent's tunneling_ip)


class FdbGone(TypedDict):
    """The port left `host` (deleted, unbound, moved or DOWN)."""

    port_id: str
    network_id: str | None  # None when the server no longer knows it
    host: str
