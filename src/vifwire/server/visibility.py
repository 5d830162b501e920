"""Which rows a project sees in a list, as SQL: the listing half of the policy.

A non-admin's list is filtered in the database, never after: `scoped` adds one
WHERE clause, so a project listing its 10 ports out of 10,000 renders 10. The
clauses are Neutron's query hooks for its default policy:

- networks: the project's own, and shared ones (`network_visible`: the one place a
  network is seen by all, which external networks join when they exist);
- subnets: the project's own, and those of networks it sees;
- ports: the project's own, and every port on a network it owns;
- security groups: the project's own; rules: its own and those of its groups.

Showing one resource is checked by `vifwire.server.policy` on the rendered item.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select

from vifwire.db.schema import networks, ports, security_group_rules, security_groups, subnets


def network_visible(project_id: str) -> ColumnElement[bool]:
    return or_(networks.c.project_id == project_id, networks.c.shared.is_(True),
               networks.c.router_external.is_(True))


def _clause(collection: str, project_id: str) -> ColumnElement[bool]:
    if collection == "networks":
        return network_visible(project_id)
    if collection == "subnets":
        seen = select(networks.c.id).where(network_visible(project_id))
        return or_(subnets.c.project_id == project_id, subnets.c.network_id.in_(seen))
    if collection == "ports":
        owned = select(networks.c.id).where(networks.c.project_id == project_id)
        return or_(ports.c.project_id == project_id, ports.c.network_id.in_(owned))
    if collection == "security_groups":
        return security_groups.c.project_id == project_id
    if collection == "security_group_rules":
        groups = select(security_groups.c.id).where(security_groups.c.project_id == project_id)
        return or_(security_group_rules.c.project_id == project_id,
                   security_group_rules.c.security_group_id.in_(groups))
    raise ValueError(f"no visibility rule for {collection}")


def scoped(stmt: Select[Any], collection: str, visible_to: str | None) -> Select[Any]:
    """`stmt` limited to what project `visible_to` sees (None: an admin, every row)."""
    return stmt if visible_to is None else stmt.where(_clause(collection, visible_to))
