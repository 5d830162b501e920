"""Ports: MAC allocation and binding (addresses: `allocations`), then the cast to the
bound host's agent.

Each write is one transaction with no awaits inside; casts and trace marks
happen after commit, so an agent never hears of a port the DB does not hold.
Binding is decided inside the transaction from the agents table: a fresh
heartbeat on the host gives vif_type "ovs", otherwise "binding_failed".

The hot path (create, bind, status, delete) executes prebuilt statements with
bound parameters, so SQLAlchemy reuses their memoized cache keys and compiled
SQL instead of rebuilding them per call, and it renders what it just wrote
instead of reading it back.
"""

from __future__ import annotations

import builtins
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    bindparam,
    delete,
    exists,
    insert,
    select,
    update,
)

from vifwire.bus.base import BusError, NoEndpoint, agent_topic
from vifwire.db.fast import Fast
from vifwire.db.schema import ip_allocations, networks, ports
from vifwire.messages import FixedIp, PortDetails, PortFirewall
from vifwire.server import faults, firewalls, outbox, port_pages, quotas, security_groups
from vifwire.server._db import read, run_read, run_transaction
from vifwire.server._query import Filters, matches
from vifwire.server._utils import dumps, iso, loads, new_id, utcnow
from vifwire.server.allocations import Allocator, sort_ips
from vifwire.server.context import Context
from vifwire.server.networks import get_row as get_network_row
from vifwire.server.tags import delete_tags, tags_of
from vifwire.server.visibility import scoped
from vifwire.trace import Stage

log = logging.getLogger(__name__)

# Changes an agent must hear about even when the host stays the same.
AGENT_VISIBLE = {"admin_state_up", "fixed_ips", "mac_address", "security_groups",
                 "port_security_enabled", "allowed_address_pairs"}
# Changes that may change the member lists of the port's groups, or its own firewall.
MEMBERSHIP = {"security_groups", "fixed_ips", "allowed_address_pairs", "port_security_enabled"}
OWN_FIREWALL = {"security_groups", "allowed_address_pairs", "port_security_enabled"}

_PORT_BY_ID = Fast(select(ports).where(ports.c.id == bindparam("port_id")))
# The port and what `details` needs of its network, in one statement (for updates).
_PORT_AND_SEGMENT = Fast(select(ports, networks.c.network_type, networks.c.segmentation_id,
                           networks.c.segment_physnet, networks.c.mtu).join(
    networks, networks.c.id == ports.c.network_id).where(ports.c.id == bindparam("port_id")))
_IPS_OF_PORT = Fast(select(ip_allocations.c.subnet_id, ip_allocations.c.ip_address).where(
    ip_allocations.c.port_id == bindparam("port_id")))
_INSERT_PORT = Fast(insert(ports))
_DELETE_IPS = Fast(delete(ip_allocations).where(ip_allocations.c.port_id == bindparam("port_id")))
_DELETE_PORT = Fast(delete(ports).where(ports.c.id == bindparam("port_id")))
_FLIP_STATUS = Fast(update(ports).where(
    ports.c.id == bindparam("b_id"), ports.c.status == bindparam("b_status"),
    ports.c.revision_number == bindparam("b_revision"),
).values(status=bindparam("status"), revision_number=bindparam("revision"),
         updated_at=bindparam("updated_at")))
_PORTS_ON_HOST = select(ports).where(ports.c.id.in_(bindparam("port_ids", expanding=True)),
                                     ports.c.binding_host == bindparam("host"))
_PORT_ON_HOST = Fast(select(ports).where(ports.c.id == bindparam("port_id"),
                                         ports.c.binding_host == bindparam("host")))
_UPDATE_PORT = Fast(update(ports).where(ports.c.id == bindparam("b_id")))  # SET from the parameters
_SET_STATUS = Fast(update(ports).where(ports.c.id == bindparam("b_id")).values(
    status=bindparam("status")))


# Above this many rows, a listing fetches addresses and tags by its own statement
# (a subquery) rather than by a list of ids.
MANY_ROWS = 50


def render(row: Any, fixed_ips: list[FixedIp]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "network_id": row.network_id,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "mac_address": row.mac_address,
        "admin_state_up": row.admin_state_up,
        "status": row.status,
        "device_id": row.device_id,
        "device_owner": row.device_owner,
        "fixed_ips": fixed_ips,
        "allowed_address_pairs": loads(row.allowed_address_pairs),
        "security_groups": loads(row.security_groups),
        "port_security_enabled": row.port_security_enabled,
        "binding:host_id": row.binding_host,
        "binding:vif_type": row.binding_vif_type,
        "binding:vif_details": loads(row.binding_vif_details),
        "binding:vnic_type": row.binding_vnic_type,
        "binding:profile": loads(row.binding_profile),
        "extra_dhcp_opts": loads(row.extra_dhcp_opts) if row.extra_dhcp_opts else [],
        "tags": [],
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "revision_number": row.revision_number,
    }


def get_row(conn: Connection, port_id: str) -> Any:
    row = _PORT_BY_ID.execute(conn, {"port_id": port_id}).first()
    if row is None:
        raise faults.PortNotFound(port_id)
    return row


def fixed_ips_of(conn: Connection,
                 port_ids: list[str] | Select[Any]) -> dict[str, list[FixedIp]]:
    """Addresses by port id; `port_ids` may be a subquery of ids (a listing's own
    statement): thousands of bound parameters cost more to send and parse than
    the semi-join costs the database (10,000 ports: most of a listing's time)."""
    result: dict[str, list[FixedIp]] = defaultdict(list)
    if isinstance(port_ids, list) and len(port_ids) == 1:
        result[port_ids[0]] = [FixedIp(subnet_id=subnet_id, ip_address=address) for
                               subnet_id, address in _IPS_OF_PORT.execute(conn,
                                                                  {"port_id": port_ids[0]})]
    elif isinstance(port_ids, Select) or port_ids:
        query = select(ip_allocations.c.port_id, ip_allocations.c.subnet_id,
                       ip_allocations.c.ip_address).where(ip_allocations.c.port_id.in_(port_ids))
        for port_id, subnet_id, address in conn.execute(query):
            result[port_id].append(FixedIp(subnet_id=subnet_id, ip_address=address))
    for ips in result.values():
        sort_ips(ips)
    return result


def details(conn: Connection, row: Any, network: Any = None,
            fixed_ips: list[FixedIp] | None = None,
            firewall: PortFirewall | None = None, *,
            with_members: bool = True) -> PortDetails:
    """What the agent needs, its firewall included; pass the network row, IPs and
    firewall when already at hand. A bind's push goes `with_members=False`
    (`vifwire.server.firewalls`: the agent reads a group it does not hold)."""
    if firewall is None:
        firewall = firewalls.of_port(conn, row, with_members=with_members)
    if network is None:
        network = get_network_row(conn, row.network_id)
    if fixed_ips is None:
        fixed_ips = fixed_ips_of(conn, [row.id])[row.id]
    return PortDetails(
        port_id=row.id, mac_address=row.mac_address, network_id=row.network_id,
        network_type=network.network_type, segmentation_id=network.segmentation_id,
        physical_network=network.segment_physnet or None, mtu=network.mtu,
        admin_state_up=row.admin_state_up, fixed_ips=fixed_ips,
        device_owner=row.device_owner, device_id=row.device_id, host=row.binding_host,
        status=row.status, port_security_enabled=row.port_security_enabled,
        security_groups=loads(row.security_groups), firewall=firewall)


class AddressPairAndPortSecurityRequired(faults.Conflict):
    type = "AddressPairAndPortSecurityRequired"

    def __init__(self) -> None:
        super().__init__("Port Security must be enabled in order to have allowed address "
                         "pairs on a port.")


def _pairs(requested: builtins.list[dict[str, str]] | None, mac: str,
           security: bool) -> builtins.list[dict[str, str]]:
    """The stored pairs: each with a MAC (the port's when none is given, as Neutron)."""
    pairs = [{"ip_address": p["ip_address"], "mac_address": p.get("mac_address") or mac}
             for p in requested or []]
    if pairs and not security:
        raise AddressPairAndPortSecurityRequired()
    return pairs


def _dhcp_opts(old: builtins.list[dict[str, Any]],
               changes: builtins.list[dict[str, Any]] | None) -> str | None:
    """The stored extra_dhcp_opts: Neutron merges by (opt_name, ip_version), and an
    option whose opt_value is None is removed. None: the port has none."""
    merged = {(o["opt_name"], o["ip_version"]): o for o in old}
    for opt in changes or []:
        key = (opt["opt_name"], opt["ip_version"])
        if opt["opt_value"] is None:
            merged.pop(key, None)
        else:
            merged[key] = opt
    return dumps(list(merged.values())) if merged else None


def _queued(event: outbox.Event | None) -> builtins.list[outbox.Event]:
    return [] if event is None else [event]


@dataclass
class _Outcome:
    """What a committed write must still tell the agents."""

    port_id: str
    created: bool = False
    bound: PortDetails | None = None
    unbind_host: str | None = None
    events: builtins.list[outbox.Event] = field(default_factory=builtins.list)  # for Nova
    member_of: set[str] = field(default_factory=set)  # groups whose members may have changed
    own_firewall: bool = False  # its groups, pairs or port security changed


class PortService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rng = random.Random()
        self.addresses = Allocator(self.rng)

    # -- reads ---------------------------------------------------------------

    def _render_rows(self, conn: Connection, rows: builtins.list[Any],
                     ids: Select[Any] | None = None) -> builtins.list[dict[str, Any]]:
        """Rows with their addresses and tags; `ids`, the subquery that selected the
        rows, fetches those in one semi-join each (a listing of many rows)."""
        wanted: builtins.list[str] | Select[Any] = (
            [r.id for r in rows] if ids is None or len(rows) <= MANY_ROWS else ids)
        ips, tags = fixed_ips_of(conn, wanted), tags_of(conn, wanted)
        rendered = []
        for row in rows:
            port = render(row, ips[row.id])
            port["tags"] = tags.get(row.id, [])
            rendered.append(port)
        return rendered

    def show(self, port_id: str) -> dict[str, Any]:
        return read(self.ctx.engine,
                    lambda conn: self._render_rows(conn, [get_row(conn, port_id)])[0])

    def list(self, filters: Filters,
             visible_to: str | None = None) -> builtins.list[dict[str, Any]]:
        stmt, rest = port_pages.filtered(scoped(select(ports), "ports", visible_to), filters)
        stmt = stmt.order_by(ports.c.created_at, ports.c.id)
        ids = stmt.with_only_columns(ports.c.id).order_by(None)

        def work(conn: Connection) -> builtins.list[dict[str, Any]]:
            return self._render_rows(conn, list(conn.execute(stmt)), ids)
        return [p for p in read(self.ctx.engine, work) if matches(p, rest)]

    def page(self, filters: Filters, *, fields: Sequence[str],
             sorts: Sequence[tuple[str, bool]], limit: int | None, marker: str | None,
             page_reverse: bool) -> builtins.list[dict[str, Any]] | None:
        """One page, filtered, sorted, paged and with only `fields` (and `id`) in
        SQL; None where `list` and the API's in-memory listing must answer
        (`port_pages`)."""
        return read(self.ctx.engine, lambda conn: port_pages.page(
            conn, filters, fields, sorts, limit, marker, page_reverse))

    # -- IPAM and binding, inside a transaction ------------------------------

    def _mac(self, conn: Connection, network_id: str, requested: str | None) -> str:
        if requested is None:
            return "fa:16:3e:" + ":".join(f"{self.rng.randrange(256):02x}" for _ in range(3))
        mac = requested  # lower case already (attributes.mac)
        taken = conn.execute(select(exists().where(
            ports.c.network_id == network_id, ports.c.mac_address == mac))).scalar()
        if taken:
            raise faults.MacAddressInUse(network_id, mac)
        return mac

    def _binding(self, conn: Connection, host: str) -> dict[str, Any]:
        if not host:
            vif_type, vif_details = "unbound", {}
        elif self.ctx.liveness.alive_on(conn, host):
            ovs = self.ctx.settings.ovs
            vif_type, vif_details = "ovs", {
                "port_filter": True, "connectivity": "l2", "ovs_hybrid_plug": False,
                "datapath_type": ovs.datapath_type, "bridge_name": ovs.integration_bridge}
        else:
            vif_type, vif_details = "binding_failed", {}
        return {"binding_host": host, "binding_vif_type": vif_type,
                "binding_vif_details": dumps(vif_details)}

    # -- writes --------------------------------------------------------------

    def _insert(self, conn: Connection, body: dict[str, Any]) -> tuple[_Outcome, dict[str, Any]]:
        network = get_network_row(conn, body["network_id"])
        quotas.check(conn, self.ctx, body["project_id"], "port")
        port_id = new_id()
        now = utcnow()
        mac = self._mac(conn, network.id, body.get("mac_address"))
        device_owner = body.get("device_owner", "")
        # Neutron's ML2: a trusted (network:*) port has no port security; any other
        # takes its network's unless it says.
        security = not security_groups.trusted(device_owner) and body.get(
            "port_security_enabled", network.port_security_enabled)
        pairs = _pairs(body.get("allowed_address_pairs"), mac, security)
        groups = security_groups.new_port_groups(conn, body["project_id"],
                                                 body.get("security_groups"), security,
                                                 device_owner)
        values = dict(
            id=port_id, project_id=body["project_id"], name=body.get("name", ""),
            description=body.get("description", ""), created_at=now, updated_at=now,
            revision_number=1, network_id=network.id,
            mac_address=mac,
            admin_state_up=body.get("admin_state_up", True), status="DOWN",
            device_id=body.get("device_id", ""), device_owner=device_owner,
            port_security_enabled=security, security_groups=dumps(groups),
            allowed_address_pairs=dumps(pairs),
            binding_vnic_type=body.get("binding:vnic_type", "normal"),
            binding_profile=dumps(body.get("binding:profile") or {}),
            extra_dhcp_opts=_dhcp_opts([], body.get("extra_dhcp_opts")),
            **self._binding(conn, body.get("binding:host_id") or ""),
        )
        _INSERT_PORT.execute(conn, values)
        security_groups.bind(conn, port_id, groups)
        fixed_ips = self.addresses.allocate(conn, network.id, port_id, body.get("fixed_ips"),
                                            values["device_owner"])
        row = SimpleNamespace(**values)
        bound = (details(conn, row, network, fixed_ips, with_members=False)
                 if row.binding_vif_type == "ovs" else None)
        return (_Outcome(port_id, created=True, bound=bound, member_of=set(groups)),
                render(row, fixed_ips))

    async def create(self, bodies: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        def work(conn: Connection) -> tuple[builtins.list[_Outcome], builtins.list[dict[str, Any]]]:
            done = [self._insert(conn, body) for body in bodies]
            return [outcome for outcome, _ in done], [rendered for _, rendered in done]
        outcomes, rendered = await run_transaction(self.ctx.engine, work)
        await self._announce(outcomes)
        return rendered

    async def update(self, port_id: str, body: dict[str, Any],
                     if_revision: int | None = None) -> dict[str, Any]:
        def work(conn: Connection) -> tuple[_Outcome, dict[str, Any]]:
            row = _PORT_AND_SEGMENT.execute(conn, {"port_id": port_id}).first()
            if row is None:
                raise faults.PortNotFound(port_id)
            if if_revision is not None and row.revision_number != if_revision:
                raise faults.RevisionNumberConstraintFailed(if_revision, row.revision_number)
            outcome = _Outcome(port_id)
            revision = row.revision_number + 1
            values: dict[str, Any] = {k: body[k] for k in (
                "name", "description", "admin_state_up", "device_id", "device_owner",
                "port_security_enabled") if k in body}
            if "binding:profile" in body:
                values["binding_profile"] = dumps(body["binding:profile"] or {})
            if "binding:vnic_type" in body:
                values["binding_vnic_type"] = body["binding:vnic_type"]
            if "extra_dhcp_opts" in body:
                values["extra_dhcp_opts"] = _dhcp_opts(
                    loads(row.extra_dhcp_opts) if row.extra_dhcp_opts else [],
                    body["extra_dhcp_opts"])
            if "mac_address" in body and body["mac_address"] != row.mac_address:
                values["mac_address"] = self._mac(conn, row.network_id, body["mac_address"])
            security = body.get("port_security_enabled", row.port_security_enabled)
            if "allowed_address_pairs" in body:
                values["allowed_address_pairs"] = dumps(_pairs(
                    body["allowed_address_pairs"], values.get("mac_address", row.mac_address),
                    security))
            elif not security and loads(row.allowed_address_pairs):
                raise AddressPairAndPortSecurityRequired()
            groups = security_groups.updated_port_groups(conn, row, body.get("security_groups"),
                                                         security)
            if groups is not None:
                values["security_groups"] = dumps(groups)
                security_groups.bind(conn, port_id, groups, replace=True)
            if groups is not None or MEMBERSHIP & body.keys():
                outcome.member_of = {*loads(row.security_groups), *(groups or ())}
                outcome.own_firewall = groups is not None or OWN_FIREWALL & body.keys() != set()
            fixed_ips: builtins.list[FixedIp] | None = None
            if "fixed_ips" in body:
                _DELETE_IPS.execute(conn, {"port_id": port_id})
                fixed_ips = self.addresses.allocate(
                    conn, row.network_id, port_id, body["fixed_ips"],
                    body.get("device_owner", row.device_owner))
            old_host = row.binding_host
            new_host = body.get("binding:host_id", old_host) or ""
            rebind = "binding:host_id" in body and (
                new_host != old_host or row.binding_vif_type == "binding_failed")
            if rebind:
                values.update(self._binding(conn, new_host))
            if new_host != old_host:
                if old_host and row.binding_vif_type == "ovs":
                    outcome.unbind_host = old_host
                if row.status == "ACTIVE":
                    values["status"] = "DOWN"
                    outcome.events += _queued(outbox.enqueue(conn, row, outbox.UNPLUGGED,
                                                             revision))
            values.update(updated_at=utcnow(), revision_number=revision)
            _UPDATE_PORT.execute(conn, {"b_id": port_id, **values})
            new = SimpleNamespace(**{**row._asdict(), **values})
            if fixed_ips is None:
                fixed_ips = fixed_ips_of(conn, [port_id])[port_id]
            if new.binding_vif_type == "ovs" and (rebind or AGENT_VISIBLE & body.keys()):
                outcome.bound = details(conn, new, network=row, fixed_ips=fixed_ips,
                                        with_members=False)
            rendered = render(new, fixed_ips)
            rendered["tags"] = tags_of(conn, [port_id]).get(port_id, [])
            return outcome, rendered
        outcome, rendered = await run_transaction(self.ctx.engine, work)
        await self._announce([outcome])
        return rendered

    async def delete(self, port_id: str) -> None:
        def work(conn: Connection) -> _Outcome:
            row = get_row(conn, port_id)
            outcome = _Outcome(port_id, member_of=set(loads(row.security_groups)))
            if row.binding_host and row.binding_vif_type == "ovs":
                outcome.unbind_host = row.binding_host
            # Like Neutron: vif-deleted for any compute port, whatever its status,
            # and no vif-unplugged (Nova detaches the interface on vif-deleted).
            # The delete is the port's last transition: revision + 1 keys it.
            outcome.events += _queued(outbox.enqueue(conn, row, outbox.DELETED,
                                                     row.revision_number + 1))
            _DELETE_IPS.execute(conn, {"port_id": port_id})
            delete_tags(conn, [port_id])
            _DELETE_PORT.execute(conn, {"port_id": port_id})
            return outcome
        outcome = await run_transaction(self.ctx.engine, work)
        await self._announce([outcome])

    async def _announce(self, outcomes: builtins.list[_Outcome]) -> None:
        """After commit: wake the notifier if it has events, trace, tell the agents."""
        tracer = self.ctx.tracer
        for outcome in outcomes:
            if outcome.events:
                self.ctx.send_events(outcome.events)
            if outcome.created:
                tracer.mark(Stage.CREATED, outcome.port_id)
            if outcome.unbind_host:
                await self._cast(outcome.unbind_host, "port_unbound", port_id=outcome.port_id)
            if outcome.bound is not None:
                tracer.mark(Stage.BOUND, outcome.port_id)
                if await self._cast(outcome.bound["host"], "port_bound", port=outcome.bound):
                    tracer.mark(Stage.PUSHED, outcome.port_id)
        await self.ctx.l2pop.ports_changed(outcomes)
        await self.ctx.firewalls.ports_changed(outcomes)

    async def _cast(self, host: str, method: str, **kwargs: Any) -> bool:
        try:
            await self.ctx.bus.cast(agent_topic(host), method, **kwargs)
            return True
        except NoEndpoint:
            log.info("no agent listening on %s for %s; it will sync on start", host, method)
        except BusError:
            log.warning("could not cast %s to %s", method, host, exc_info=True)
        return False

    # -- agent RPC -----------------------------------------------------------

    async def host_ports(self, host: str) -> builtins.list[PortDetails]:
        def work(conn: Connection) -> builtins.list[PortDetails]:
            on_host = (ports.c.binding_host == host) & (ports.c.binding_vif_type == "ovs")
            rows = list(conn.execute(select(ports).where(on_host)))
            # An agent's start: one query for the ports, one for all their IPs and
            # one per network, not two per port.
            ips: dict[str, list[FixedIp]] = defaultdict(list)
            for port_id, subnet_id, address in conn.execute(
                    select(ip_allocations.c.port_id, ip_allocations.c.subnet_id,
                           ip_allocations.c.ip_address)
                    .join(ports, ports.c.id == ip_allocations.c.port_id).where(on_host)):
                ips[port_id].append(FixedIp(subnet_id=subnet_id, ip_address=address))
            for found in ips.values():
                sort_ips(found)
            networks = {n: get_network_row(conn, n) for n in {r.network_id for r in rows}}
            walls = firewalls.build(conn, rows)
            return [details(conn, r, networks[r.network_id], ips[r.id], walls[r.id])
                    for r in rows]
        return await run_read(self.ctx.engine, work)

    async def host_port(self, host: str, port_id: str) -> PortDetails | None:
        def work(conn: Connection) -> PortDetails | None:
            row = conn.execute(select(ports).where(
                ports.c.id == port_id, ports.c.binding_host == host,
                ports.c.binding_vif_type == "ovs")).first()
            return None if row is None else details(conn, row)
        return await run_read(self.ctx.engine, work)

    async def set_status(self, host: str, port_ids: builtins.list[str],
                   status: str) -> builtins.list[str]:
        """Move ports bound to `host` to `status`; ids now in that status.

        Each port flips with its own conditional UPDATE, so of two racing
        reports only one sees a transition and queues the Nova event.
        """
        event = outbox.PLUGGED if status == "ACTIVE" else outbox.UNPLUGGED

        def work(conn: Connection) -> tuple[list[str], list[str], list[outbox.Event]]:
            # The agent reports ports as they come up, mostly one per call.
            rows = list(_PORT_ON_HOST.execute(conn, {"port_id": port_ids[0], "host": host})
                        if len(port_ids) == 1 else
                        conn.execute(_PORTS_ON_HOST, {"port_ids": port_ids, "host": host}))
            flipped, events = [], []
            for row in rows:
                if row.status == status:
                    continue
                if status == "DOWN" and row.status != "ACTIVE":
                    _SET_STATUS.execute(conn, {"b_id": row.id, "status": status})
                    continue
                revision = row.revision_number + 1
                changed = _FLIP_STATUS.execute(conn, {
                    "b_id": row.id, "b_status": row.status, "b_revision": row.revision_number,
                    "status": status, "revision": revision, "updated_at": utcnow()}).rowcount
                if changed:
                    events += _queued(outbox.enqueue(conn, row, event, revision))
                    flipped.append(row.id)
            return [r.id for r in rows], flipped, events
        done, flipped, events = await run_transaction(self.ctx.engine, work)
        if events:
            self.ctx.send_events(events)
        if status == "ACTIVE":
            for port_id in flipped:
                self.ctx.tracer.mark(Stage.ACTIVE, port_id)
        return done
