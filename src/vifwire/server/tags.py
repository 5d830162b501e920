"""Tags on networks, subnets and ports (Neutron's `standard-attr-tag`).

Tags live in their own table keyed by (resource_id, tag); resource ids are
UUIDs, so one table serves every resource type. Each change is one transaction
that first checks the resource exists (its 404) and then bumps the resource's
revision_number and updated_at, as Neutron does for any standard attribute.
The services delete a resource's tags in the transaction that deletes it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Select, Table, bindparam, delete, insert, select, update

from vifwire.db.fast import Fast
from vifwire.db.schema import networks, ports, security_groups, subnetpools, subnets, tags
from vifwire.server import faults
from vifwire.server._db import read, run_transaction
from vifwire.server._utils import utcnow
from vifwire.server.context import Context
from vifwire.server.sg_faults import SecurityGroupNotFound

# Which table holds each taggable collection; the API validates the tags themselves.
_TABLES: dict[str, tuple[Table, type[faults.NotFound]]] = {
    "networks": (networks, faults.NetworkNotFound),
    "subnets": (subnets, faults.SubnetNotFound),
    "ports": (ports, faults.PortNotFound),
    "security-groups": (security_groups, SecurityGroupNotFound),
    "subnetpools": (subnetpools, faults.SubnetPoolNotFound),
}


# The one-resource forms run per port request: prebuilt, so SQLAlchemy reuses them.
_TAGS_OF_ONE = Fast(select(tags.c.resource_id, tags.c.tag).where(
    tags.c.resource_id == bindparam("resource_id")).order_by(tags.c.tag))
_DELETE_TAGS_OF_ONE = Fast(delete(tags).where(tags.c.resource_id == bindparam("resource_id")))


def delete_tags(conn: Connection, resource_ids: Iterable[Any] | Select[Any]) -> None:
    """Drop the tags of resources being deleted (`resource_ids` may be a subquery)."""
    if isinstance(resource_ids, list) and len(resource_ids) == 1:
        _DELETE_TAGS_OF_ONE.execute(conn, {"resource_id": resource_ids[0]})
        return
    conn.execute(delete(tags).where(tags.c.resource_id.in_(resource_ids)))


def tags_of(conn: Connection, resource_ids: list[str] | Select[Any]) -> dict[str, list[str]]:
    """Tags by resource id; `resource_ids` may be a subquery of ids (a listing's own
    statement: one semi-join instead of thousands of bound parameters)."""
    found: dict[str, list[str]] = defaultdict(list)
    rows: Iterable[Any]
    if isinstance(resource_ids, list) and len(resource_ids) == 1:
        rows = _TAGS_OF_ONE.execute(conn, {"resource_id": resource_ids[0]})
    elif isinstance(resource_ids, Select) or resource_ids:
        rows = conn.execute(select(tags.c.resource_id, tags.c.tag)
                            .where(tags.c.resource_id.in_(resource_ids)).order_by(tags.c.tag))
    else:
        return found
    for resource_id, tag in rows:
        found[resource_id].append(tag)
    return found


class TagService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _touch(self, conn: Connection, collection: str, resource_id: str,
               changed: bool = True) -> None:
        table, missing = _TABLES[collection]
        row = conn.execute(select(table.c.id).where(table.c.id == resource_id)).first()
        if row is None:
            raise missing(resource_id)
        if changed:
            conn.execute(update(table).where(table.c.id == resource_id).values(
                updated_at=utcnow(), revision_number=table.c.revision_number + 1))

    def of(self, resource_ids: list[str]) -> dict[str, list[str]]:
        return read(self.ctx.engine, lambda conn: tags_of(conn, resource_ids))

    def get(self, collection: str, resource_id: str) -> list[str]:
        def work(conn: Connection) -> list[str]:
            self._touch(conn, collection, resource_id, changed=False)
            return tags_of(conn, [resource_id])[resource_id]
        return read(self.ctx.engine, work)

    def has(self, collection: str, resource_id: str, tag: str) -> None:
        if tag not in self.get(collection, resource_id):
            raise faults.TagNotFound(tag, resource_id)

    async def replace(self, collection: str, resource_id: str, new: list[str]) -> list[str]:
        wanted = sorted(set(new))

        def work(conn: Connection) -> list[str]:
            self._touch(conn, collection, resource_id)
            delete_tags(conn, [resource_id])
            if wanted:
                conn.execute(insert(tags), [
                    {"resource_id": resource_id, "tag": t, "resource_type": collection}
                    for t in wanted])
            return wanted
        return await run_transaction(self.ctx.engine, work)

    async def add(self, collection: str, resource_id: str, tag: str) -> None:
        def work(conn: Connection) -> None:
            present = tag in tags_of(conn, [resource_id])[resource_id]
            self._touch(conn, collection, resource_id, changed=not present)
            if not present:
                conn.execute(insert(tags).values(resource_id=resource_id, tag=tag,
                                                 resource_type=collection))
        await run_transaction(self.ctx.engine, work)

    async def remove(self, collection: str, resource_id: str, tag: str) -> None:
        def work(conn: Connection) -> None:
            self._touch(conn, collection, resource_id)
            if "\x00" in tag:  # could never have been stored
                raise faults.TagNotFound(tag, resource_id)
            gone = conn.execute(delete(tags).where(tags.c.resource_id == resource_id,
                                                   tags.c.tag == tag)).rowcount
            if not gone:
                raise faults.TagNotFound(tag, resource_id)
        await run_transaction(self.ctx.engine, work)

    async def clear(self, collection: str, resource_id: str) -> None:
        def work(conn: Connection) -> None:
            self._touch(conn, collection, resource_id)
            delete_tags(conn, [resource_id])
        await run_transaction(self.ctx.engine, work)
