"""Networks: create/read/update/delete and segment allocation.

Segments live on the network row (one segment per network, like ML2 without
multi-segment). A requested segmentation id that is taken is a 409; an
allocated one that loses a race is retried via the unique constraint.
"""

from __future__ import annotations

import builtins
import random
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, bindparam, delete, exists, func, insert, select, update

from vifwire.db.fast import Fast
from vifwire.db.schema import networks, ports, subnets
from vifwire.server import faults, quotas
from vifwire.server._db import read, run_transaction
from vifwire.server._query import Filters, matches, where
from vifwire.server._utils import iso, new_id, utcnow
from vifwire.server.context import Context
from vifwire.server.mtu import network_mtu
from vifwire.server.tags import delete_tags
from vifwire.server.visibility import scoped

TUNNEL_TYPES = {"vxlan": 50, "geneve": 58}
VXLAN_OVERHEAD = 50

COLUMNS = {
    "id": networks.c.id,
    "name": networks.c.name,
    "description": networks.c.description,
    "project_id": networks.c.project_id,
    "tenant_id": networks.c.project_id,
    "admin_state_up": networks.c.admin_state_up,
    "shared": networks.c.shared,
    "status": networks.c.status,
    "mtu": networks.c.mtu,
    "port_security_enabled": networks.c.port_security_enabled,
    "provider:network_type": networks.c.network_type,
    "provider:physical_network": networks.c.segment_physnet,
    "provider:segmentation_id": networks.c.segmentation_id,
    "revision_number": networks.c.revision_number,
    "router:external": networks.c.router_external,
}
TO_DB = {"provider:physical_network": lambda v: v or ""}


def render(row: Any, subnet_ids: list[str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "admin_state_up": row.admin_state_up,
        "status": row.status,
        "shared": row.shared,
        "subnets": subnet_ids,
        "mtu": row.mtu,
        "port_security_enabled": row.port_security_enabled,
        "provider:network_type": row.network_type,
        "provider:physical_network": row.segment_physnet or None,
        "provider:segmentation_id": row.segmentation_id,
        "availability_zone_hints": [],
        "availability_zones": [],
        "ipv4_address_scope": None,
        "ipv6_address_scope": None,
        "router:external": row.router_external,
        "tags": [],
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "revision_number": row.revision_number,
    }


# The smallest MTU an IPv4 network may have (RFC 791), as neutron-lib's validator.
MIN_MTU = 68


def _mtu(requested: int | None, largest: int) -> int:
    """net-mtu-writable: the requested MTU, at most what the segment carries."""
    if requested is None:
        return largest
    if requested > largest:
        raise faults.InvalidInput(f"Requested MTU is too big, maximum is {largest}")
    if requested < MIN_MTU:
        raise faults.InvalidInput(f"'{requested}' is too small - must be at least '{MIN_MTU}'")
    return requested


_NETWORK_BY_ID = Fast(select(networks).where(networks.c.id == bindparam("network_id")))


def get_row(conn: Connection, network_id: str) -> Any:
    row = _NETWORK_BY_ID.execute(conn, {"network_id": network_id}).first()
    if row is None:
        raise faults.NetworkNotFound(network_id)
    return row


class NetworkService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rng = random.Random()

    # -- reads ---------------------------------------------------------------

    def _render_rows(self, conn: Connection,
                     rows: builtins.list[Any]) -> builtins.list[dict[str, Any]]:
        by_network: dict[str, list[str]] = defaultdict(list)
        if rows:
            ids = [r.id for r in rows]
            query = (select(subnets.c.id, subnets.c.network_id)
                     .where(subnets.c.network_id.in_(ids)).order_by(subnets.c.created_at))
            for sid, nid in conn.execute(query):
                by_network[nid].append(sid)
        return [render(r, by_network[r.id]) for r in rows]

    def show(self, network_id: str) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            return self._render_rows(conn, [get_row(conn, network_id)])[0]
        return read(self.ctx.engine, work)

    def list(self, filters: Filters,
             visible_to: str | None = None) -> builtins.list[dict[str, Any]]:
        stmt, rest = where(scoped(select(networks), "networks", visible_to), COLUMNS, filters,
                           TO_DB)
        stmt = stmt.order_by(networks.c.created_at, networks.c.id)

        def work(conn: Connection) -> builtins.list[dict[str, Any]]:
            return self._render_rows(conn, list(conn.execute(stmt)))
        return [n for n in read(self.ctx.engine, work) if matches(n, rest)]

    # -- writes --------------------------------------------------------------

    async def create(self, bodies: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """All-or-nothing: every network in one transaction."""
        def work(conn: Connection) -> builtins.list[dict[str, Any]]:
            rows = [get_row(conn, self._insert(conn, body)) for body in bodies]
            return self._render_rows(conn, rows)
        return await run_transaction(self.ctx.engine, work)

    def _insert(self, conn: Connection, body: dict[str, Any]) -> str:
        settings = self.ctx.settings
        quotas.check(conn, self.ctx, body["project_id"], "network")
        # Only an absent type takes the default: "" is a type ML2 does not know.
        network_type = body.get("provider:network_type")
        if network_type is None:
            network_type = settings.default_network_type
        physnet, seg_id = self._segment(conn, network_type, body.get("provider:physical_network"),
                                        body.get("provider:segmentation_id"))
        now = utcnow()
        network_id = new_id()
        conn.execute(insert(networks).values(
            id=network_id, project_id=body["project_id"], name=body.get("name", ""),
            description=body.get("description", ""), created_at=now, updated_at=now,
            revision_number=1, admin_state_up=body.get("admin_state_up", True),
            shared=body.get("shared", False), status="ACTIVE",
            mtu=_mtu(body.get("mtu"), network_mtu(settings, network_type)),
            router_external=body.get("router:external", False),
            port_security_enabled=body.get("port_security_enabled", True),
            network_type=network_type, segment_physnet=physnet or "", segmentation_id=seg_id,
        ))
        return network_id

    def _segment(self, conn: Connection, network_type: str, physnet: str | None,
                 seg_id: int | None) -> tuple[str | None, int | None]:
        settings = self.ctx.settings
        if network_type in TUNNEL_TYPES:
            if physnet:
                raise faults.InvalidInput(f"provider:physical_network specified for "
                                          f"{network_type} network")
            low, high = settings.vxlan_vni_range
        elif network_type == "vlan":
            physnet = physnet or settings.physical_network
            low, high = settings.vlan_range
        elif network_type == "flat":
            if seg_id is not None:
                raise faults.InvalidInput("provider:segmentation_id specified for flat network")
            return physnet or settings.physical_network, None
        else:
            raise faults.InvalidInput(f"network_type value '{network_type}' not supported")
        used_query = select(networks.c.segmentation_id).where(
            networks.c.network_type == network_type,
            networks.c.segment_physnet == (physnet or ""))
        if seg_id is not None:
            if not low <= seg_id <= high:
                raise faults.InvalidInput(f"segmentation_id {seg_id} out of range "
                                          f"({low} through {high})")
            taken = conn.execute(select(exists(used_query.where(
                networks.c.segmentation_id == seg_id)))).scalar()
            if taken:
                raise faults.SegmentationIdInUse(network_type, seg_id, physnet)
            return physnet, seg_id
        used = set(conn.execute(used_query).scalars())
        if high - low + 1 - len(used) <= 0:
            raise faults.NoNetworkAvailable()
        if high - low > 100_000:
            while True:
                candidate = self.rng.randint(low, high)
                if candidate not in used:
                    return physnet, candidate
        free = [v for v in range(low, high + 1) if v not in used]
        return physnet, self.rng.choice(free[:64])

    async def update(self, network_id: str, body: dict[str, Any],
               if_revision: int | None = None) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            row = get_row(conn, network_id)
            if if_revision is not None and row.revision_number != if_revision:
                raise faults.RevisionNumberConstraintFailed(if_revision, row.revision_number)
            values = {k: v for k, v in body.items() if k in
                      ("name", "description", "admin_state_up", "shared",
                       "port_security_enabled")}
            if "router:external" in body:
                values["router_external"] = body["router:external"]
            if "mtu" in body:
                values["mtu"] = _mtu(body["mtu"], network_mtu(self.ctx.settings,
                                                              row.network_type))
            conn.execute(update(networks).where(networks.c.id == network_id).values(
                **values, updated_at=utcnow(),
                revision_number=networks.c.revision_number + 1))
            return self._render_rows(conn, [get_row(conn, network_id)])[0]
        return await run_transaction(self.ctx.engine, work)

    async def delete(self, network_id: str) -> None:
        def work(conn: Connection) -> None:
            get_row(conn, network_id)
            in_use = conn.execute(select(func.count()).select_from(ports)
                                  .where(ports.c.network_id == network_id)).scalar()
            if in_use:
                raise faults.NetworkInUse(network_id)
            delete_tags(conn, select(subnets.c.id).where(subnets.c.network_id == network_id))
            delete_tags(conn, [network_id])
            conn.execute(delete(subnets).where(subnets.c.network_id == network_id))
            conn.execute(delete(networks).where(networks.c.id == network_id))
        await run_transaction(self.ctx.engine, work)
