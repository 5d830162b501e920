"""Quotas: each project's limits, and the check every create makes against them.

A limit is the project's row in `quotas`, else the default from Settings
(Neutron's [quotas] quota_<resource>); -1 is unlimited. Usage is not kept in a
counter table (a row every create and delete of a project would update, and
lock, on PostgreSQL): `check` looks at the project's rows of that resource (an
index on project_id) inside the creating transaction, so a bulk create sees
what it inserted so far. bench/quota_cost.py measures what it adds to a port
create. On SQLite writers are serialized, so a limit is
exact; on PostgreSQL and MariaDB two racing creates of one project may both pass
the count (Neutron reserves to narrow that window; vifwire does not).

Who may read or change whose quotas is policy (issue 11 item 2), not decided here.
"""

from __future__ import annotations

import builtins
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, select, update

from vifwire.db.fast import Fast
from vifwire.db.schema import (
    networks,
    ports,
    quotas,
    security_group_rules,
    security_groups,
    subnetpools,
    subnets,
)
from vifwire.server import faults
from vifwire.server._db import read, run_transaction

if TYPE_CHECKING:  # context.py imports the services' modules, which import this one
    from vifwire.server.context import Context

TABLES: dict[str, Table] = {
    "network": networks, "subnet": subnets, "subnetpool": subnetpools, "port": ports,
    "security_group": security_groups, "security_group_rule": security_group_rules,
}
UNLIMITED = -1
MAX_LIMIT = 2**31 - 1  # the column's integer


class OverQuota(faults.Conflict):
    type = "OverQuota"

    def __init__(self, resources: builtins.list[str]) -> None:
        super().__init__(f"Quota exceeded for resources: {sorted(resources)}.")


class InvalidQuotaValue(faults.Conflict):
    type = "InvalidQuotaValue"

    def __init__(self, resource: str, limit: int, used: int) -> None:
        super().__init__(f"Change would make usage less than 0 for the following "
                         f"resources: ['{resource}']. Quota limit {limit} is less than "
                         f"its usage {used}.")


class TenantQuotaNotFound(faults.NotFound):
    type = "TenantQuotaNotFound"

    def __init__(self, project_id: str) -> None:
        super().__init__(f"Quota for tenant {project_id} could not be found.")


_LIMIT = Fast(select(quotas.c.limit).where(quotas.c.project_id == bindparam("project_id"),
                                           quotas.c.resource == bindparam("resource")))


def _nth(table: Table) -> Fast:
    """A row of the project's at 0-based position `n`, if it has more than n."""
    return Fast(select(table.c.project_id).where(table.c.project_id == bindparam("project_id"))
                .limit(1).offset(bindparam("n")))


_NTH = {resource: _nth(table) for resource, table in TABLES.items()}


def check(conn: Connection, ctx: Context, project_id: str, resource: str,
          adding: int = 1) -> None:
    """Raise OverQuota if the project cannot have `adding` more of `resource`; call
    inside the creating transaction, before the insert.

    Not a COUNT: whether the project has a row at position limit - adding, so the
    index walk stops at the limit (500 ports by default), and an unlimited
    resource costs only the primary-key lookup of its limit."""
    row = _LIMIT.execute(conn, {"project_id": project_id, "resource": resource}).first()
    limit = row[0] if row is not None else ctx.settings.quota_defaults[resource]
    if limit == UNLIMITED:
        return
    if limit < adding or _NTH[resource].execute(
            conn, {"project_id": project_id, "n": limit - adding}).first() is not None:
        raise OverQuota([resource])


def _value(resource: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise faults.InvalidInput(f"'{value}' is not an integer")
    try:
        number = int(value)
    except ValueError:
        raise faults.InvalidInput(f"'{value}' is not an integer") from None
    if number < UNLIMITED:
        raise faults.InvalidInput(f"'{number}' should be greater than or equal to -1")
    if number > MAX_LIMIT:
        raise faults.InvalidInput(f"'{number}' should be smaller than or equal to {MAX_LIMIT}")
    return number


class QuotaService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def defaults(self) -> dict[str, int]:
        return dict(self.ctx.settings.quota_defaults)

    def _set(self, conn: Connection, project_id: str) -> dict[str, int]:
        rows = conn.execute(select(quotas.c.resource, quotas.c.limit)
                            .where(quotas.c.project_id == project_id))
        return {resource: limit for resource, limit in rows if resource in TABLES}

    # show, default and details render the resources only (Tempest walks every key of
    # details as a resource); a list names each project, as Neutron's.
    def show(self, project_id: str) -> dict[str, Any]:
        return {**self.defaults, **read(self.ctx.engine, lambda c: self._set(c, project_id))}

    def default(self, project_id: str) -> dict[str, Any]:
        return self.defaults

    def list(self) -> builtins.list[dict[str, Any]]:
        """Projects with a limit of their own (Neutron lists no others)."""
        def work(conn: Connection) -> dict[str, dict[str, int]]:
            found: dict[str, dict[str, int]] = defaultdict(dict)
            for project, resource, limit in conn.execute(select(quotas).order_by(
                    quotas.c.project_id)):
                if resource in TABLES:
                    found[project][resource] = limit
            return found
        return [{**self.defaults, **limits, "project_id": project, "tenant_id": project}
                for project, limits in read(self.ctx.engine, work).items()]

    def details(self, project_id: str) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            limits = {**self.defaults, **self._set(conn, project_id)}
            return {resource: {"limit": limits[resource], "used": self._used(
                conn, resource, project_id), "reserved": 0} for resource in TABLES}
        return read(self.ctx.engine, work)

    @staticmethod
    def _used(conn: Connection, resource: str, project_id: str) -> int:
        table = TABLES[resource]
        return int(conn.execute(select(func.count()).select_from(table)
                                .where(table.c.project_id == project_id)).scalar() or 0)

    async def update(self, project_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Set the limits named in `body` (Neutron's quota-check-limit: with
        `check_limit` true, a limit below the usage is refused)."""
        body = dict(body)
        check_limit = body.pop("check_limit", False)
        for key in ("project_id", "tenant_id"):
            body.pop(key, None)
        unknown = sorted(k for k in body if k not in TABLES)
        if unknown:
            raise faults.BadRequest("Unrecognized attribute(s) '" + ", ".join(unknown) + "'")
        limits = {resource: _value(resource, value) for resource, value in body.items()}

        def work(conn: Connection) -> None:
            have = self._set(conn, project_id)
            for resource, limit in limits.items():
                if check_limit is True and limit != UNLIMITED:
                    used = self._used(conn, resource, project_id)
                    if limit < used:
                        raise InvalidQuotaValue(resource, limit, used)
                where = (quotas.c.project_id == project_id) & (quotas.c.resource == resource)
                if resource in have:
                    conn.execute(update(quotas).where(where).values(limit=limit))
                else:
                    conn.execute(insert(quotas).values(project_id=project_id,
                                                       resource=resource, limit=limit))
        await run_transaction(self.ctx.engine, work)
        return self.show(project_id)

    async def reset(self, project_id: str) -> None:
        """Back to the defaults (DELETE /v2.0/quotas/<project>)."""
        def work(conn: Connection) -> None:
            if not conn.execute(delete(quotas).where(quotas.c.project_id == project_id)
                                ).rowcount:
                raise TenantQuotaNotFound(project_id)
        await run_transaction(self.ctx.engine, work)
