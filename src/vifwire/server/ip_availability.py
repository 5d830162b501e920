"""network-ip-availability: per network and subnet, how many addresses the pools hold
and how many are allocated. Computed on each read from subnets and ip_allocations."""

from __future__ import annotations

import builtins
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, func, select

from vifwire.db.schema import ip_allocations, networks, subnets
from vifwire.server import faults, ipam
from vifwire.server._db import read
from vifwire.server._query import Filters, matches, where
from vifwire.server._utils import loads
from vifwire.server.context import Context

COLUMNS = {
    "network_id": networks.c.id,
    "network_name": networks.c.name,
    "project_id": networks.c.project_id,
    "tenant_id": networks.c.project_id,
}


class IpAvailabilityService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _render(self, conn: Connection, rows: builtins.list[Any],
                versions: builtins.list[Any] | None) -> builtins.list[dict[str, Any]]:
        ids = [r.id for r in rows]
        by_network: dict[str, builtins.list[Any]] = defaultdict(builtins.list)
        used: dict[str, int] = {}
        if ids:
            query = select(subnets).where(subnets.c.network_id.in_(ids)).order_by(
                subnets.c.created_at, subnets.c.id)
            if versions:
                query = query.where(subnets.c.ip_version.in_(versions))
            for subnet in conn.execute(query):
                by_network[subnet.network_id].append(subnet)
            used = dict(conn.execute(  # type: ignore[arg-type]
                select(ip_allocations.c.subnet_id, func.count())
                .where(ip_allocations.c.network_id.in_(ids))
                .group_by(ip_allocations.c.subnet_id)).all())
        found = []
        for row in rows:
            parts = [{"subnet_id": s.id, "subnet_name": s.name, "cidr": s.cidr,
                      "ip_version": s.ip_version,
                      "total_ips": ipam.size(loads(s.allocation_pools)),
                      "used_ips": used.get(s.id, 0)} for s in by_network[row.id]]
            found.append({
                "network_id": row.id, "network_name": row.name,
                "tenant_id": row.project_id, "project_id": row.project_id,
                "total_ips": sum(p["total_ips"] for p in parts),
                "used_ips": sum(p["used_ips"] for p in parts),
                "subnet_ip_availability": parts})
        return found

    def show(self, network_id: str) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            row = conn.execute(select(networks).where(networks.c.id == network_id)).first()
            if row is None:
                raise faults.NotFound(f"Network {network_id} could not be found.")
            return self._render(conn, [row], None)[0]
        return read(self.ctx.engine, work)

    def list(self, filters: Filters) -> builtins.list[dict[str, Any]]:
        filters = dict(filters)
        versions = filters.pop("ip_version", None)
        stmt, rest = where(select(networks), COLUMNS, filters)
        stmt = stmt.order_by(networks.c.created_at, networks.c.id)

        def work(conn: Connection) -> builtins.list[dict[str, Any]]:
            return self._render(conn, builtins.list(conn.execute(stmt)), versions)
        return [a for a in read(self.ctx.engine, work) if matches(a, rest)]
