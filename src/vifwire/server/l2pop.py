"""l2population: tell each host's agent where the remote ports of its networks are.

As Neutron's l2pop mechanism driver: a port of a vxlan network is announced
(`fdb_add`) when it becomes ACTIVE on a host whose agent has a tunnel address
(`configurations.tunneling_ip` in its heartbeat, the agents table), and
withdrawn (`fdb_remove`) when it goes DOWN, is deleted, or is bound elsewhere.
Each cast goes to `agent.<host>` of every OTHER host with ports bound on that
network (one cast per host, whatever the number of ports), never to the port's
own host. All pushes: nothing here is asked for on the plug path.

A host that gets its first ACTIVE port on a network also needs what is already
there: it is sent the network's remote ports when one of the ports it just
reported is the smallest id among its ACTIVE ports on that network (no
ACTIVE port of that host and network has a smaller one). Of ports
turning ACTIVE at once in racing transactions, the one with the smallest id
always sees itself as the smallest after its own commit, so at least one of
them sends (a spare send is harmless: adds are upserts by port id). An agent
that starts or reconnects asks for everything with `get_host_fdb` (`host_fdb`).

A deleted port's network is no longer in the database; `_networks` remembers
it for the ports this process announced, and otherwise the withdrawal goes to
every tunnelling host, as Neutron's fanout does.
"""

from __future__ import annotations

import builtins
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, bindparam, exists, select

from vifwire.bus.base import BusError, NoEndpoint, agent_topic
from vifwire.db.fast import Fast
from vifwire.db.schema import agents, ip_allocations, networks, ports
from vifwire.messages import FdbEntry, FdbGone, PortDetails
from vifwire.server._db import run_read
from vifwire.server._utils import loads
from vifwire.server.liveness import OVS_AGENT_TYPE

if TYPE_CHECKING:
    from vifwire.server.context import Context

log = logging.getLogger(__name__)

TUNNELLED = "vxlan"  # the one tunnel type the agent builds
BOUND = ports.c.binding_vif_type == "ovs"

# The statements of every status report, prebuilt (see vifwire.db.fast).
_AGENT_CONFIGURATIONS = Fast(select(agents.c.configurations).where(
    agents.c.agent_type == OVS_AGENT_TYPE, agents.c.host == bindparam("host")))
_PEERS = Fast(select(agents.c.host, agents.c.configurations).where(
    agents.c.agent_type == OVS_AGENT_TYPE, agents.c.host != bindparam("host"),
    exists().where(ports.c.binding_host == agents.c.host,
                   ports.c.network_id == bindparam("network_id"), BOUND)))
_PORT_ENTRY = Fast(select(ports.c.id, ports.c.network_id, ports.c.mac_address,
                          networks.c.network_type, networks.c.segmentation_id)
                   .join(networks, networks.c.id == ports.c.network_id)
                   .where(ports.c.id == bindparam("port_id"),
                          ports.c.binding_host == bindparam("host"), BOUND,
                          networks.c.network_type == TUNNELLED))
_ADDRESSES = Fast(select(ip_allocations.c.ip_address).where(
    ip_allocations.c.port_id == bindparam("port_id")))
# Is a port of this host and network ACTIVE with a smaller id (see the module doc)?
_ACTIVE_BELOW = Fast(select(exists().where(
    ports.c.binding_host == bindparam("host"), ports.c.network_id == bindparam("network_id"),
    BOUND, ports.c.status == "ACTIVE", ports.c.id < bindparam("port_id"))))
_TUNNELLED_NETWORK_OF = Fast(select(ports.c.network_id).join(
    networks, networks.c.id == ports.c.network_id).where(
    ports.c.id == bindparam("port_id"), networks.c.network_type == TUNNELLED))


class Change(Protocol):
    """What a committed port write tells l2pop (`server.ports._Outcome`)."""

    port_id: str
    unbind_host: str | None  # the host it left (deleted, or bound elsewhere)
    bound: PortDetails | None  # its details now, when an agent must hear of them


class L2Population:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._networks: dict[str, str] = {}  # port id -> network id, of announced ports

    # -- the full sync -----------------------------------------------------

    async def host_fdb(self, host: str) -> builtins.list[FdbEntry]:
        """Every remote ACTIVE port of the vxlan networks `host` has ports on."""
        def work(conn: Connection) -> builtins.list[FdbEntry]:
            tunnel_ips = _tunnel_ips(conn)
            if host not in tunnel_ips:
                return []
            mine = select(ports.c.network_id).where(ports.c.binding_host == host, BOUND)
            return _entries(conn, tunnel_ips, ports.c.network_id.in_(mine),
                            ports.c.binding_host != host, ports.c.status == "ACTIVE")
        return await run_read(self.ctx.engine, work)

    # -- after a status report ---------------------------------------------

    async def ports_status(self, host: str, port_ids: builtins.list[str], status: str) -> None:
        """`port_ids` on `host` are now `status` (committed): announce or withdraw them."""
        if not port_ids:
            return
        if status == "ACTIVE":
            casts = await run_read(self.ctx.engine,
                                   lambda conn: self._went_up(conn, host, port_ids))
            for target, entries in casts.items():
                await self._cast(target, "fdb_add", entries=entries)
        else:
            gone = await run_read(self.ctx.engine,
                                  lambda conn: self._went_down(conn, host, port_ids))
            for target, removed in gone.items():
                await self._cast(target, "fdb_remove", entries=removed)

    def _went_up(self, conn: Connection, host: str,
                 port_ids: builtins.list[str]) -> dict[str, builtins.list[FdbEntry]]:
        own_ip = _tunnel_ip_of(conn, host)
        if own_ip is None:
            return {}  # a host without tunnels: nobody can reach its ports
        by_network: dict[str, builtins.list[FdbEntry]] = defaultdict(builtins.list)
        for port_id in port_ids:
            entry = _entry(conn, port_id, host, own_ip)
            if entry is not None:
                by_network[entry["network_id"]].append(entry)
                self._networks[port_id] = entry["network_id"]
        casts: dict[str, builtins.list[FdbEntry]] = defaultdict(builtins.list)
        for network_id, announced in by_network.items():
            peers = _peers(conn, network_id, host)
            for target in peers:
                casts[target] += announced
            lowest = min(e["port_id"] for e in announced)
            if peers and not _ACTIVE_BELOW.execute(conn, {
                    "host": host, "network_id": network_id, "port_id": lowest}).scalar():
                casts[host] += _network_entries(conn, network_id, peers)
        return {target: found for target, found in casts.items() if found}

    def _went_down(self, conn: Connection, host: str,
                   port_ids: builtins.list[str]) -> dict[str, builtins.list[FdbGone]]:
        if _tunnel_ip_of(conn, host) is None:
            return {}  # never announced
        gone: dict[str, builtins.list[FdbGone]] = defaultdict(builtins.list)
        for port_id in port_ids:
            network_id = _TUNNELLED_NETWORK_OF.execute(conn, {"port_id": port_id}).scalar()
            if network_id is None:
                continue
            for target in _peers(conn, network_id, host):
                gone[target].append(FdbGone(port_id=port_id, network_id=network_id, host=host))
        return gone

    # -- after a port write ------------------------------------------------

    async def ports_changed(self, changes: Iterable[Change]) -> None:
        """Withdraw ports that left a host; re-announce an ACTIVE port whose MAC or
        addresses changed. Creating and binding ports costs nothing here."""
        for change in changes:
            bound = change.bound
            if change.unbind_host:
                network_id = bound["network_id"] if bound is not None else \
                    self._networks.pop(change.port_id, None)
                await self._withdraw(change.port_id, network_id, change.unbind_host)
            elif bound is not None and bound["status"] == "ACTIVE":
                await self.ports_status(bound["host"], [change.port_id], "ACTIVE")

    async def _withdraw(self, port_id: str, network_id: str | None, host: str) -> None:
        def work(conn: Connection) -> builtins.list[str]:
            if network_id is None:
                return [h for h in _tunnel_ips(conn) if h != host]
            return list(_peers(conn, network_id, host))
        gone = FdbGone(port_id=port_id, network_id=network_id, host=host)
        for target in await run_read(self.ctx.engine, work):
            await self._cast(target, "fdb_remove", entries=[gone])

    async def _cast(self, host: str, method: str, **kwargs: Any) -> None:
        try:
            await self.ctx.bus.cast(agent_topic(host), method, **kwargs)
        except NoEndpoint:
            log.info("no agent on %s for %s; it gets them at its full sync", host, method)
        except BusError:
            log.warning("could not cast %s to %s", method, host, exc_info=True)


def _tunnel_ips(conn: Connection) -> dict[str, str]:
    """host -> tunnel address, for every OVS agent that reported one."""
    found = {}
    for host, configurations in conn.execute(select(agents.c.host, agents.c.configurations)
                                             .where(agents.c.agent_type == OVS_AGENT_TYPE)):
        address = loads(configurations).get("tunneling_ip")
        if address:
            found[host] = address
    return found


def _tunnel_ip_of(conn: Connection, host: str) -> str | None:
    configurations = _AGENT_CONFIGURATIONS.execute(conn, {"host": host}).scalar()
    address = loads(configurations).get("tunneling_ip") if configurations else None
    return str(address) if address else None


def _peers(conn: Connection, network_id: str, host: str) -> dict[str, str]:
    """host -> tunnel address of the tunnelling hosts other than `host` with ports
    bound on the network: one EXISTS per agent, on the ports' host index."""
    found = {}
    for peer, configurations in _PEERS.execute(conn, {"network_id": network_id, "host": host}):
        address = loads(configurations).get("tunneling_ip")
        if address:
            found[peer] = str(address)
    return found


def _entry(conn: Connection, port_id: str, host: str, local_ip: str) -> FdbEntry | None:
    row = _PORT_ENTRY.execute(conn, {"port_id": port_id, "host": host}).first()
    if row is None:
        return None
    addresses = sorted(_ADDRESSES.execute(conn, {"port_id": port_id}).scalars())
    return FdbEntry(port_id=row.id, network_id=row.network_id, network_type=row.network_type,
                    segmentation_id=row.segmentation_id, mac_address=row.mac_address,
                    ip_addresses=addresses, host=host, local_ip=local_ip)


def _network_entries(conn: Connection, network_id: str,
                     peers: dict[str, str]) -> builtins.list[FdbEntry]:
    """The ACTIVE ports of the network on `peers` (the full push to a new host)."""
    return _entries(conn, peers, ports.c.network_id == network_id,
                    ports.c.binding_host.in_(list(peers)), ports.c.status == "ACTIVE")


def _entries(conn: Connection, tunnel_ips: dict[str, str],
             *where: Any) -> builtins.list[FdbEntry]:
    """FdbEntry for each bound port of a tunnelled network matching `where`,
    on a host with a tunnel address."""
    query = (select(ports.c.id, ports.c.network_id, ports.c.mac_address, ports.c.binding_host,
                    networks.c.network_type, networks.c.segmentation_id)
             .join(networks, networks.c.id == ports.c.network_id)
             .where(BOUND, networks.c.network_type == TUNNELLED, *where))
    rows = [r for r in conn.execute(query) if r.binding_host in tunnel_ips]
    if not rows:
        return []
    addresses: dict[str, builtins.list[str]] = defaultdict(builtins.list)
    for port_id, address in conn.execute(
            select(ip_allocations.c.port_id, ip_allocations.c.ip_address)
            .where(ip_allocations.c.port_id.in_([r.id for r in rows]))):
        addresses[port_id].append(address)
    return [FdbEntry(port_id=r.id, network_id=r.network_id, network_type=r.network_type,
                     segmentation_id=r.segmentation_id, mac_address=r.mac_address,
                     ip_addresses=sorted(addresses[r.id]), host=r.binding_host,
                     local_ip=tunnel_ips[r.binding_host]) for r in rows]
