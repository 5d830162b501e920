"""Subnet pools (subnet_allocation, default-subnetpools): prefixes subnets are carved from.

A pool holds CIDRs of one IP version (merged, canonical) and the prefix lengths
a subnet taken from it may have. A subnet names the pool (`subnetpool_id`, or
`use_default_subnetpool` for the pool marked `is_default` of its version) and
either a CIDR inside the pool or just a `prefixlen`: then the first free block
of that size is carved (`ipam.carve`), free meaning overlapping no subnet
already taken from the pool. Prefixes may only grow on update, as on Neutron; a
pool with subnets cannot be deleted.
"""

from __future__ import annotations

import builtins
import ipaddress
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, or_, select, update

from vifwire.db.schema import subnetpools, subnets
from vifwire.server import faults, ipam, quotas
from vifwire.server._db import read, run_transaction
from vifwire.server._query import Filters, matches, where
from vifwire.server._utils import dumps, loads, new_id, standard, standard_tail, utcnow
from vifwire.server.context import Context
from vifwire.server.tags import delete_tags

COLUMNS = {
    "id": subnetpools.c.id,
    "name": subnetpools.c.name,
    "description": subnetpools.c.description,
    "project_id": subnetpools.c.project_id,
    "tenant_id": subnetpools.c.project_id,
    "ip_version": subnetpools.c.ip_version,
    "default_prefixlen": subnetpools.c.default_prefixlen,
    "min_prefixlen": subnetpools.c.min_prefixlen,
    "max_prefixlen": subnetpools.c.max_prefixlen,
    "shared": subnetpools.c.shared,
    "is_default": subnetpools.c.is_default,
    "default_quota": subnetpools.c.default_quota,
    "revision_number": subnetpools.c.revision_number,
}


class SubnetPoolInUse(faults.Conflict):
    type = "SubnetPoolInUse"

    def __init__(self, pool_id: str) -> None:
        super().__init__(f"Unable to complete operation on subnet pool {pool_id}. Subnets "
                         "are still allocated from it.")


class IllegalSubnetPoolPrefixBounds(faults.BadRequest):
    type = "IllegalSubnetPoolPrefixBounds"


class SubnetAllocationError(faults.ServerFault):
    status = 409
    type = "SubnetAllocationError"


def render(row: Any) -> dict[str, Any]:
    return {
        **standard(row),
        "ip_version": row.ip_version,
        "prefixes": loads(row.prefixes),
        "default_prefixlen": row.default_prefixlen,
        "min_prefixlen": row.min_prefixlen,
        "max_prefixlen": row.max_prefixlen,
        "shared": row.shared,
        "is_default": row.is_default,
        "default_quota": row.default_quota,
        "address_scope_id": None,
        **standard_tail(row),
    }


def get_row(conn: Connection, pool_id: str) -> Any:
    row = conn.execute(select(subnetpools).where(subnetpools.c.id == pool_id)).first()
    if row is None:
        raise faults.SubnetPoolNotFound(pool_id)
    return row


def default_pool(conn: Connection, ip_version: int) -> Any:
    """The pool marked is_default for this IP version (default-subnetpools)."""
    row = conn.execute(select(subnetpools).where(subnetpools.c.is_default.is_(True),
                                                 subnetpools.c.ip_version == ip_version)
                       ).first()
    if row is None:
        raise faults.BadRequest(f"No default subnetpool found for IPv{ip_version}")
    return row


def _prefixes(raw: builtins.list[str]) -> builtins.list[ipam.IPNetwork]:
    if not raw:
        raise faults.InvalidInput("prefixes must not be empty")
    try:
        networks = [ipaddress.ip_network(p, strict=False) for p in raw]
    except ValueError as exc:
        raise faults.InvalidInput(str(exc)) from None
    if len({n.version for n in networks}) > 1:
        raise faults.BadRequest("Cannot mix IPv4 and IPv6 prefixes in a subnet pool.")
    return list(ipaddress.collapse_addresses(networks))  # type: ignore[type-var]


def _bounds(version: int, body: dict[str, Any], row: Any = None) -> tuple[int, int, int]:
    """(min, default, max) prefix lengths, from the body over the row or the defaults."""
    top = 32 if version == 4 else 128
    low = body.get("min_prefixlen", row.min_prefixlen if row is not None else
                   (8 if version == 4 else 64))
    high = body.get("max_prefixlen", row.max_prefixlen if row is not None else top)
    default = body.get("default_prefixlen", row.default_prefixlen if row is not None else low)
    for name, value in (("min_prefixlen", low), ("max_prefixlen", high),
                        ("default_prefixlen", default)):
        if not 0 <= value <= top:
            raise IllegalSubnetPoolPrefixBounds(
                f"Illegal prefix bounds: {name}={value}, base prefix length 0-{top}.")
    if not low <= default <= high:
        raise IllegalSubnetPoolPrefixBounds(
            f"Illegal prefix bounds: min_prefixlen={low}, default_prefixlen={default}, "
            f"max_prefixlen={high}.")
    return low, default, high


def allocate(conn: Connection, pool: Any, cidr: str | None,
             prefixlen: int | None) -> str:
    """The CIDR a new subnet takes from `pool`: `cidr` checked against it, or the
    first free block of `prefixlen` (default: the pool's default_prefixlen)."""
    prefixes = [ipaddress.ip_network(p) for p in loads(pool.prefixes)]
    taken = [ipaddress.ip_network(c) for c in conn.execute(
        select(subnets.c.cidr).where(subnets.c.subnetpool_id == pool.id)).scalars()]
    if cidr is not None:
        wanted = ipaddress.ip_network(cidr, strict=False)
        if not any(wanted.version == p.version and wanted.subnet_of(p)  # type: ignore[arg-type]
                   for p in prefixes):
            raise faults.BadRequest(f"Cidr {cidr} is not within the prefixes of subnet pool "
                                    f"{pool.id}")
        if not pool.min_prefixlen <= wanted.prefixlen <= pool.max_prefixlen:
            raise faults.BadRequest(f"Prefix length {wanted.prefixlen} is outside the pool's "
                                    f"{pool.min_prefixlen}-{pool.max_prefixlen}")
        if any(wanted.overlaps(t) for t in taken):  # type: ignore[arg-type]
            raise SubnetAllocationError(f"Failed to allocate subnet: Cidr {cidr} overlaps a "
                                        "subnet of the pool.")
        return str(wanted)
    length = pool.default_prefixlen if prefixlen is None else prefixlen
    if not pool.min_prefixlen <= length <= pool.max_prefixlen:
        raise faults.BadRequest(f"Unable to allocate subnet with prefix length {length}, "
                                f"minimum allowed prefix is {pool.min_prefixlen}, maximum "
                                f"allowed prefix is {pool.max_prefixlen}")
    carved = ipam.carve(prefixes, taken, length)
    if carved is None:
        raise SubnetAllocationError("Failed to allocate subnet: Insufficient prefix space to "
                                    "allocate subnet size /" + str(length))
    return str(carved)


class SubnetPoolService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def show(self, pool_id: str) -> dict[str, Any]:
        return render(read(self.ctx.engine, lambda conn: get_row(conn, pool_id)))

    def list(self, filters: Filters,
             visible_to: str | None = None) -> builtins.list[dict[str, Any]]:
        """`visible_to`: a project sees its own pools and shared ones (None: all)."""
        stmt, rest = where(select(subnetpools), COLUMNS, filters)
        if visible_to is not None:
            stmt = stmt.where(or_(subnetpools.c.project_id == visible_to,
                                  subnetpools.c.shared.is_(True)))
        stmt = stmt.order_by(subnetpools.c.created_at, subnetpools.c.id)
        rows = read(self.ctx.engine, lambda conn: builtins.list(conn.execute(stmt)))
        return [p for p in map(render, rows) if matches(p, rest)]

    async def create(self, bodies: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        def work(conn: Connection) -> builtins.list[dict[str, Any]]:
            return [render(get_row(conn, self._insert(conn, body))) for body in bodies]
        return await run_transaction(self.ctx.engine, work)

    def _insert(self, conn: Connection, body: dict[str, Any]) -> str:
        if "prefixes" not in body:
            raise faults.BadRequest("Failed to parse request. Required attribute 'prefixes' "
                                    "not specified")
        quotas.check(conn, self.ctx, body["project_id"], "subnetpool")
        prefixes = _prefixes(body["prefixes"])
        version = prefixes[0].version
        low, default, high = _bounds(version, body)
        if body.get("is_default"):
            self._check_one_default(conn, version, None)
        now = utcnow()
        pool_id = new_id()
        conn.execute(insert(subnetpools).values(
            id=pool_id, project_id=body["project_id"], name=body.get("name", ""),
            description=body.get("description", ""), created_at=now, updated_at=now,
            revision_number=1, ip_version=version, prefixes=dumps([str(p) for p in prefixes]),
            default_prefixlen=default, min_prefixlen=low, max_prefixlen=high,
            shared=body.get("shared", False), is_default=body.get("is_default", False),
            default_quota=body.get("default_quota")))
        return pool_id

    @staticmethod
    def _check_one_default(conn: Connection, version: int, pool_id: str | None) -> None:
        other = conn.execute(select(subnetpools.c.id).where(
            subnetpools.c.is_default.is_(True), subnetpools.c.ip_version == version,
            subnetpools.c.id != (pool_id or ""))).scalar()
        if other is not None:
            raise faults.InvalidInput("A default subnetpool for this IP family has already "
                                      "been set. Only one default may exist per IP family")

    async def update(self, pool_id: str, body: dict[str, Any],
                     if_revision: int | None = None) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            row = get_row(conn, pool_id)
            if if_revision is not None and row.revision_number != if_revision:
                raise faults.RevisionNumberConstraintFailed(if_revision, row.revision_number)
            values: dict[str, Any] = {k: body[k] for k in (
                "name", "description", "is_default", "default_quota") if k in body}
            if "prefixes" in body:
                old = [ipaddress.ip_network(p) for p in loads(row.prefixes)]
                new = _prefixes(body["prefixes"])
                if new[0].version != row.ip_version or not all(
                        any(o.subnet_of(n) for n in new) for o in old):  # type: ignore[arg-type]
                    raise faults.BadRequest("Existing prefixes must be a subset of the new "
                                            "prefixes")
                values["prefixes"] = dumps([str(p) for p in new])
            low, default, high = _bounds(row.ip_version, body, row)
            values.update(min_prefixlen=low, default_prefixlen=default, max_prefixlen=high)
            if body.get("is_default"):
                self._check_one_default(conn, row.ip_version, pool_id)
            conn.execute(update(subnetpools).where(subnetpools.c.id == pool_id).values(
                **values, updated_at=utcnow(), revision_number=row.revision_number + 1))
            return render(get_row(conn, pool_id))
        return await run_transaction(self.ctx.engine, work)

    async def delete(self, pool_id: str) -> None:
        def work(conn: Connection) -> None:
            get_row(conn, pool_id)
            if conn.execute(select(exists().where(subnets.c.subnetpool_id == pool_id))).scalar():
                raise SubnetPoolInUse(pool_id)
            delete_tags(conn, [pool_id])
            conn.execute(delete(subnetpools).where(subnetpools.c.id == pool_id))
        await run_transaction(self.ctx.engine, work)
