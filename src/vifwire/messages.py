"""The shapes of what the server and the agents tell each other over the bus.

Server -> agent, topic `agent.<host>` (casts):
    port_bound(port: PortDetails)      a port was bound to this host (or changed)
    port_unbound(port_id: str)         the port was deleted or bound elsewhere
    resync()                           read this host's ports again (a cast may be lost)
    fdb_add(entries: list[FdbEntry])   remote ports now ACTIVE on a network this host
                                       has ports on (l2population; upsert by port id)
    fdb_remove(entries: list[FdbGone]) remote ports gone from the host they name

Agent -> server, topic `server`:
    call get_host_ports(host) -> list[PortDetails]        full sync at agent start
    call get_port_details(host, port_id) -> PortDetails | None   VIF arrived before the bind
    call ports_up(host, port_ids) -> list[str]     ports that went ACTIVE
    call ports_down(host, port_ids) -> list[str]   ports that went DOWN
    call get_host_fdb(host) -> list[FdbEntry]      full sync: the remote ACTIVE ports of
                                                   every vxlan network the host has ports on
    cast report_state(agent: AgentState)           heartbeat
"""

from __future__ import annotations

from typing import TypedDict


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
