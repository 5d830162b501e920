"""Security groups: each project's `default` group, the groups of ports, and what the
agents will need of them.

A project's `default` group is made on first use, as Neutron makes it: the first
list of that project's groups or rules, the first group it creates, or its first
port with port security that names no groups. It holds Neutron's four default
rules (ingress from members of the group itself and all egress, for IPv4 and
IPv6); any other new group gets the two egress rules. The
default_security_groups table's key on the project decides a race between two
servers: the loser's transaction fails on it, runs again and finds the winner's
group. The default group cannot be renamed or deleted, and no other group may be
called `default` (the API refuses the name).

A port's groups (Neutron's ML2 rules): a port without port security has none, and
asking for some is a 400; a port with port security that names none gets its
project's default group (an explicit [] stays []); ports owned by `network:*` are
trusted: no port security, no groups. The groups must exist in the port's project
and be all stateful or all stateless. `ports.security_groups` keeps the ids as
rendered; security_group_port_bindings holds the same pairs, so a group in use
cannot be deleted (its foreign key) and a group's members are one indexed query.

What the agents hear of groups (each port's firewall with its details, and the
casts after a change) is `vifwire.server.firewalls`; a change of `stateful`, and a
delete that takes other groups' rules naming the group with it, tell it here.
"""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import Connection, bindparam, delete, exists, insert, select, update

from vifwire.db.fast import Fast
from vifwire.db.schema import (
    default_security_groups,
    ports,
    security_group_port_bindings,
    security_groups,
)
from vifwire.messages import PortFirewall
from vifwire.server import faults, firewalls, quotas, sg_faults, sg_rules
from vifwire.server._db import read, run_transaction
from vifwire.server._query import Filters, matches, where
from vifwire.server._utils import iso, loads, new_id, utcnow
from vifwire.server.caller import caller_is_admin
from vifwire.server.context import Context
from vifwire.server.tags import delete_tags
from vifwire.server.visibility import scoped

DEFAULT_NAME = "default"
DEFAULT_DESCRIPTION = "Default security group"
TRUSTED_PREFIX = "network:"  # neutron_lib.utils.net.is_port_trusted

COLUMNS = {
    "id": security_groups.c.id,
    "name": security_groups.c.name,
    "description": security_groups.c.description,
    "project_id": security_groups.c.project_id,
    "tenant_id": security_groups.c.project_id,
    "stateful": security_groups.c.stateful,
    "revision_number": security_groups.c.revision_number,
}

_DEFAULT_OF = Fast(select(default_security_groups.c.security_group_id).where(
    default_security_groups.c.project_id == bindparam("project_id")))
_GROUP_BY_ID = Fast(select(security_groups).where(security_groups.c.id == bindparam("group_id")))
_INSERT_BINDING = Fast(insert(security_group_port_bindings))
_IN_USE = select(exists().where(
    security_group_port_bindings.c.security_group_id == bindparam("group_id")))


def render(row: Any, rules: builtins.list[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "stateful": row.stateful,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "security_group_rules": [sg_rules.render(r) for r in rules],
        "tags": [],
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "revision_number": row.revision_number,
    }


def get_row(conn: Connection, group_id: str) -> Any:
    row = _GROUP_BY_ID.execute(conn, {"group_id": group_id}).first()
    if row is None:
        raise sg_faults.SecurityGroupNotFound(group_id)
    return row


def _create(conn: Connection, project_id: str, name: str, description: str,
            stateful: bool, default: bool = False) -> str:
    group_id = new_id()
    now = utcnow()
    conn.execute(insert(security_groups).values(
        id=group_id, project_id=project_id, name=name, description=description,
        created_at=now, updated_at=now, revision_number=1, stateful=stateful))
    if default:  # the project's key: a racing second default fails here (module doc)
        conn.execute(insert(default_security_groups).values(
            project_id=project_id, security_group_id=group_id))
    for ethertype in ("IPv4", "IPv6"):
        if default:
            sg_rules.insert_rule(conn, project_id, group_id, sg_rules.check(
                {"direction": "ingress", "ethertype": ethertype, "remote_group_id": group_id}))
        sg_rules.insert_rule(conn, project_id, group_id, sg_rules.check(
            {"direction": "egress", "ethertype": ethertype}))
    return group_id


def default_group(conn: Connection, project_id: str) -> str:
    """The id of the project's default group, made now if it has none."""
    found = _DEFAULT_OF.execute(conn, {"project_id": project_id}).scalar()
    if found is not None:
        return str(found)
    return _create(conn, project_id, DEFAULT_NAME, DEFAULT_DESCRIPTION, stateful=True,
                   default=True)


def in_use(conn: Connection, group_id: str) -> bool:
    return bool(conn.execute(_IN_USE, {"group_id": group_id}).scalar())


# -- the groups of a port, inside the port's transaction -------------------------

def _check_groups(conn: Connection, project_id: str, group_ids: builtins.list[str]) -> None:
    rows = {r.id: r for r in conn.execute(select(
        security_groups.c.id, security_groups.c.project_id, security_groups.c.stateful)
        .where(security_groups.c.id.in_(group_ids)))}
    missing = [g for g in group_ids if g not in rows or rows[g].project_id != project_id]
    if missing:
        raise sg_faults.SecurityGroupNotFound(", ".join(missing))
    if len({r.stateful for r in rows.values()}) > 1:
        raise sg_faults.SecurityGroupConflict(
            "Cannot apply both stateful and stateless security groups on the same port at "
            "the same time")


def trusted(device_owner: str) -> bool:
    return device_owner.startswith(TRUSTED_PREFIX)


def new_port_groups(conn: Connection, project_id: str, requested: builtins.list[str] | None,
                    security: bool, device_owner: str) -> builtins.list[str]:
    """The groups a new port gets (module doc); `requested` None: not in the request."""
    if trusted(device_owner):
        return []
    if not security:
        if requested:
            raise sg_faults.PortSecurityAndIPRequiredForSecurityGroups()
        return []
    if requested is None:
        return [default_group(conn, project_id)]
    if requested:
        _check_groups(conn, project_id, requested)
    return requested


def updated_port_groups(conn: Connection, row: Any, requested: builtins.list[str] | None,
                        security: bool) -> builtins.list[str] | None:
    """The port's new groups, None if they stay (Neutron's port update rules): turning
    port security off needs the groups gone, in this request or before."""
    if requested is None:
        if not security and loads(row.security_groups):
            raise sg_faults.PortSecurityPortHasSecurityGroup()
        return None
    if trusted(row.device_owner):
        return []
    if requested and not security:
        raise sg_faults.PortSecurityAndIPRequiredForSecurityGroups()
    if requested:
        _check_groups(conn, row.project_id, requested)
    return requested


def bind(conn: Connection, port_id: str, group_ids: builtins.list[str],
         replace: bool = False) -> None:
    """Write the port's bindings (after the port row: they refer to it)."""
    if replace:
        conn.execute(delete(security_group_port_bindings).where(
            security_group_port_bindings.c.port_id == port_id))
    if len(group_ids) == 1:
        _INSERT_BINDING.execute(conn, {"port_id": port_id, "security_group_id": group_ids[0]})
    elif group_ids:
        conn.execute(insert(security_group_port_bindings),
                     [{"port_id": port_id, "security_group_id": g} for g in group_ids])


# -- what the agents need (issue 10 item 3; built in `vifwire.server.firewalls`) --

def port_firewall(conn: Connection, port_id: str) -> PortFirewall:
    """What the agent of a port needs to filter it (`firewalls.build`)."""
    row = conn.execute(select(ports).where(ports.c.id == port_id)).first()
    if row is None:
        raise faults.PortNotFound(port_id)
    return firewalls.of_port(conn, row)


class SecurityGroupService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _render_rows(self, conn: Connection,
                     rows: builtins.list[Any]) -> builtins.list[dict[str, Any]]:
        found = sg_rules.rules_of(conn, [r.id for r in rows])
        return [render(r, found[r.id]) for r in rows]

    async def ensure_default(self, project_id: str) -> None:
        """Make the project's default group if it has none (a read first: lists call this)."""
        have = read(self.ctx.engine, lambda conn: _DEFAULT_OF.execute(
            conn, {"project_id": project_id}).first())
        if have is None:
            await run_transaction(self.ctx.engine, lambda conn: default_group(conn, project_id))

    def show(self, group_id: str) -> dict[str, Any]:
        return read(self.ctx.engine,
                    lambda conn: self._render_rows(conn, [get_row(conn, group_id)])[0])

    def list(self, filters: Filters,
             visible_to: str | None = None) -> builtins.list[dict[str, Any]]:
        stmt, rest = where(scoped(select(security_groups), "security_groups", visible_to),
                           COLUMNS, filters)
        stmt = stmt.order_by(security_groups.c.created_at, security_groups.c.id)

        def work(conn: Connection) -> builtins.list[dict[str, Any]]:
            return self._render_rows(conn, builtins.list(conn.execute(stmt)))
        return [g for g in read(self.ctx.engine, work) if matches(g, rest)]

    async def create(self, bodies: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        def work(conn: Connection) -> builtins.list[dict[str, Any]]:
            made = []
            for body in bodies:
                default_group(conn, body["project_id"])  # Neutron makes it first
                quotas.check(conn, self.ctx, body["project_id"], "security_group")
                made.append(get_row(conn, _create(
                    conn, body["project_id"], body.get("name", ""),
                    body.get("description", ""), body.get("stateful", True))))
            return self._render_rows(conn, made)
        return await run_transaction(self.ctx.engine, work)

    async def update(self, group_id: str, body: dict[str, Any],
                     if_revision: int | None = None) -> dict[str, Any]:
        def work(conn: Connection) -> tuple[dict[str, Any], bool]:
            row = get_row(conn, group_id)
            if if_revision is not None and row.revision_number != if_revision:
                raise faults.RevisionNumberConstraintFailed(if_revision, row.revision_number)
            if "stateful" in body and body["stateful"] != row.stateful \
                    and in_use(conn, group_id):
                raise sg_faults.SecurityGroupInUse(group_id)
            if row.name == DEFAULT_NAME and "name" in body:
                raise sg_faults.SecurityGroupCannotUpdateDefault()
            values = {k: body[k] for k in ("name", "description", "stateful") if k in body}
            conn.execute(update(security_groups).where(security_groups.c.id == group_id)
                         .values(**values, updated_at=utcnow(),
                                 revision_number=row.revision_number + 1))
            return self._render_rows(conn, [get_row(conn, group_id)])[0], \
                "stateful" in body and body["stateful"] != row.stateful
        rendered, flipped = await run_transaction(self.ctx.engine, work)
        if flipped:  # in use, it is refused; cast anyway should that rule ever go
            await self.ctx.firewalls.groups_changed([group_id])
        return rendered

    async def delete(self, group_id: str) -> None:
        admin = caller_is_admin.get()  # read on the caller's task, not the db thread

        def work(conn: Connection) -> builtins.list[str]:
            if in_use(conn, group_id):  # Neutron checks this first, then that it exists
                raise sg_faults.SecurityGroupInUse(group_id)
            row = get_row(conn, group_id)
            if row.name == DEFAULT_NAME and not admin:
                raise sg_faults.SecurityGroupCannotRemoveDefault()
            if row.name == DEFAULT_NAME:
                conn.execute(delete(default_security_groups).where(
                    default_security_groups.c.security_group_id == group_id))
            delete_tags(conn, [group_id])
            losing = firewalls.naming(conn, group_id)
            # Its rules, and other groups' rules naming it, go by ON DELETE CASCADE.
            conn.execute(delete(security_groups).where(security_groups.c.id == group_id))
            return losing
        await self.ctx.firewalls.groups_changed(await run_transaction(self.ctx.engine, work))
