"""Security group rules: Neutron's checks, duplicates, the rules of groups.

A rule arrives with each attribute converted (`vifwire.api.sg_attributes`); here,
as in Neutron's securitygroups_db, come the checks that span attributes, in
Neutron's order: IPv6 ICMP under its canonical name (`icmp`/`icmpv6` -> `ipv6-icmp`,
`1` -> `58`), the whole port range 1-65535 as no range, ports only for the port
protocols (1-65535, min <= max) or ICMP type/code (0-255, no code without a type),
a prefix of the rule's own ethertype, IPv6-only protocols not for IPv4, and at
most one remote (a prefix or a group). Then the groups must exist and the rule must
be new: two rules are the same when they match the same packets (the protocol by
number, an any-address prefix as no prefix). Rules are never updated but for their
description; creating or deleting one bumps its group's revision_number, as
Neutron's revision plugin does, and, after commit, sends the group's bound ports
their new firewalls (`vifwire.server.firewalls`).
"""

from __future__ import annotations

import builtins
import ipaddress
from collections import defaultdict
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from vifwire.db.fast import Fast
from vifwire.db.schema import security_group_rules as rules_table
from vifwire.db.schema import security_groups
from vifwire.server import faults, quotas, sg_faults
from vifwire.server._db import read, run_transaction
from vifwire.server._query import Filters, matches, where
from vifwire.server._utils import iso, new_id, utcnow
from vifwire.server.sg_faults import PROTOCOL_NUMBERS
from vifwire.server.visibility import scoped

if TYPE_CHECKING:  # the context holds `firewalls`, which imports this module
    from vifwire.server.context import Context

PORT_PROTOCOLS = {6, 17, 33, 132, 136}  # tcp, udp, dccp, sctp, udplite
ICMP_PROTOCOLS = {1, 58}
IPV6_ONLY = {"ipv6-encap", "ipv6-frag", "ipv6-icmp", "icmpv6", "ipv6-nonxt", "ipv6-opts",
             "ipv6-route", "41", "44", "58", "59", "60", "43"}
ANY_PREFIXES = {"0.0.0.0/0", "::/0"}
RULE_KEYS = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max",
             "remote_ip_prefix", "remote_group_id")

COLUMNS = {
    "id": rules_table.c.id,
    "project_id": rules_table.c.project_id,
    "tenant_id": rules_table.c.project_id,
    "description": rules_table.c.description,
    "revision_number": rules_table.c.revision_number,
    **{name: rules_table.c[name] for name in ("security_group_id", *RULE_KEYS)},
}

_RULE_BY_ID = Fast(select(rules_table).where(rules_table.c.id == bindparam("rule_id")))
_GROUP_EXISTS = Fast(select(security_groups.c.id).where(
    security_groups.c.id == bindparam("group_id")))


def protocol_number(protocol: str | None) -> int | None:
    if protocol is None:
        return None
    return int(protocol) if protocol.isdigit() else PROTOCOL_NUMBERS[protocol]


def normalized_cidr(prefix: str | None) -> str | None:
    return None if prefix is None else str(ipaddress.ip_network(prefix, strict=False))


def render(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "security_group_id": row.security_group_id,
        "ethertype": row.ethertype,
        "direction": row.direction,
        "protocol": row.protocol,
        "port_range_min": row.port_range_min,
        "port_range_max": row.port_range_max,
        "remote_ip_prefix": row.remote_ip_prefix,
        "remote_group_id": row.remote_group_id,
        "normalized_cidr": normalized_cidr(row.remote_ip_prefix),
        "description": row.description,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "revision_number": row.revision_number,
    }


def rules_of(conn: Connection, group_ids: builtins.list[str]) -> dict[str, builtins.list[Any]]:
    """The rule rows of each group, oldest first."""
    found: dict[str, builtins.list[Any]] = defaultdict(builtins.list)
    if group_ids:
        query = (select(rules_table).where(rules_table.c.security_group_id.in_(group_ids))
                 .order_by(rules_table.c.created_at, rules_table.c.id))
        for row in conn.execute(query):
            found[row.security_group_id].append(row)
    return found


# -- the checks, on one rule's attributes --------------------------------------

def _check_ports(rule: dict[str, Any]) -> None:
    low, high = rule["port_range_min"], rule["port_range_max"]
    if low is None and high is None:
        return
    if not rule["protocol"]:
        raise sg_faults.SecurityGroupProtocolRequiredWithPorts()
    number = protocol_number(rule["protocol"])
    if number in PORT_PROTOCOLS:
        if low == 0 or high == 0:
            raise sg_faults.SecurityGroupInvalidPortValue(0)
        if low is None or high is None or low > high:
            raise sg_faults.SecurityGroupInvalidPortRange()
    elif number in ICMP_PROTOCOLS:
        for attr, field in (("port_range_min", "type"), ("port_range_max", "code")):
            if rule[attr] is not None and not 0 <= rule[attr] <= 255:
                raise sg_faults.SecurityGroupInvalidIcmpValue(field, attr, rule[attr])
        if low is None:
            raise sg_faults.SecurityGroupMissingIcmpType(high)
    else:
        raise sg_faults.SecurityGroupInvalidProtocolForPort(number)


def check(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule's attributes in canonical form, or Neutron's 400 (module doc)."""
    rule = {"ethertype": "IPv4", **{k: None for k in RULE_KEYS[2:]}, **rule}
    if rule["ethertype"] == "IPv6":
        if rule["protocol"] in ("icmp", "icmpv6"):
            rule["protocol"] = "ipv6-icmp"
        elif rule["protocol"] == "1":
            rule["protocol"] = "58"
    if (rule["port_range_min"], rule["port_range_max"]) == (1, 65535):
        rule["port_range_min"] = rule["port_range_max"] = None
    _check_ports(rule)
    prefix = rule["remote_ip_prefix"]
    if prefix and rule["ethertype"] != f"IPv{ipaddress.ip_interface(prefix).version}":
        raise sg_faults.SecurityGroupRuleParameterConflict(rule["ethertype"], prefix)
    if rule["protocol"] in IPV6_ONLY and rule["ethertype"] == "IPv4":
        raise sg_faults.SecurityGroupEthertypeConflictWithProtocol("IPv4", rule["protocol"])
    if prefix and rule["remote_group_id"]:
        raise sg_faults.SecurityGroupMultipleRemoteEntites()
    return rule


def key(rule: Any) -> tuple[Any, ...]:
    """What makes two rules of a group the same (Neutron's _rule_to_key)."""
    get = rule.get if isinstance(rule, dict) else rule._asdict().get
    prefix = get("remote_ip_prefix")
    return (get("security_group_id"), get("direction"), get("ethertype"),
            protocol_number(get("protocol")), get("port_range_min"), get("port_range_max"),
            get("remote_group_id"), None if prefix in ANY_PREFIXES else prefix)


def insert_rule(conn: Connection, project_id: str, group_id: str, rule: dict[str, Any],
                description: str = "") -> dict[str, Any]:
    """Insert one checked rule; its values as a row would hold them."""
    now = utcnow()
    values = {"id": new_id(), "project_id": project_id, "security_group_id": group_id,
              "description": description, "created_at": now, "updated_at": now,
              "revision_number": 1, **{k: rule.get(k) for k in RULE_KEYS}}
    conn.execute(insert(rules_table).values(**values))
    return values


def touch_group(conn: Connection, group_id: str) -> None:
    conn.execute(update(security_groups).where(security_groups.c.id == group_id).values(
        updated_at=utcnow(), revision_number=security_groups.c.revision_number + 1))


class RuleService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _get_row(self, conn: Connection, rule_id: str) -> Any:
        row = _RULE_BY_ID.execute(conn, {"rule_id": rule_id}).first()
        if row is None:
            raise sg_faults.SecurityGroupRuleNotFound(rule_id)
        return row

    def show(self, rule_id: str) -> dict[str, Any]:
        return read(self.ctx.engine, lambda conn: render(self._get_row(conn, rule_id)))

    def list(self, filters: Filters,
             visible_to: str | None = None) -> builtins.list[dict[str, Any]]:
        stmt, rest = where(scoped(select(rules_table), "security_group_rules", visible_to),
                           COLUMNS, filters)
        stmt = stmt.order_by(rules_table.c.created_at, rules_table.c.id)
        rows = read(self.ctx.engine, lambda conn: builtins.list(conn.execute(stmt)))
        return [r for r in map(render, rows) if matches(r, rest)]

    async def create(self, bodies: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """All-or-nothing; a bulk create is for one group and one project, as Neutron's."""
        if len({b["security_group_id"] for b in bodies}) > 1:
            raise sg_faults.SecurityGroupNotSingleGroupRules()
        if len({b["project_id"] for b in bodies}) > 1:
            raise sg_faults.SecurityGroupRulesNotSingleProject()
        checked = [check({k: b[k] for k in ("security_group_id", *RULE_KEYS) if k in b})
                   for b in bodies]
        keys = [key(r) for r in checked]
        if len(set(keys)) < len(keys):
            raise sg_faults.DuplicateSecurityGroupRuleInPost()
        group_id, project_id = bodies[0]["security_group_id"], bodies[0]["project_id"]

        def work(conn: Connection) -> builtins.list[dict[str, Any]]:
            for remote in {r["remote_group_id"] for r in checked} - {None, group_id}:
                if _GROUP_EXISTS.execute(conn, {"group_id": remote}).first() is None:
                    raise sg_faults.SecurityGroupNotFound(remote)
            if _GROUP_EXISTS.execute(conn, {"group_id": group_id}).first() is None:
                raise sg_faults.SecurityGroupNotFound(group_id)
            quotas.check(conn, self.ctx, project_id, "security_group_rule", len(checked))
            existing = {key(row): row.id for row in rules_of(conn, [group_id])[group_id]}
            for rule_key in keys:
                if rule_key in existing:
                    raise sg_faults.SecurityGroupRuleExists(existing[rule_key])
            made = [insert_rule(conn, project_id, group_id, rule, body.get("description", ""))
                    for rule, body in zip(checked, bodies, strict=True)]
            touch_group(conn, group_id)
            return [render(SimpleNamespace(**values)) for values in made]
        made = await run_transaction(self.ctx.engine, work)
        await self.ctx.firewalls.groups_changed([group_id])  # after commit
        return made

    async def update(self, rule_id: str, body: dict[str, Any],
                     if_revision: int | None = None) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            row = self._get_row(conn, rule_id)
            if if_revision is not None and row.revision_number != if_revision:
                raise faults.RevisionNumberConstraintFailed(if_revision, row.revision_number)
            if "description" in body:
                conn.execute(update(rules_table).where(rules_table.c.id == rule_id).values(
                    description=body["description"], updated_at=utcnow(),
                    revision_number=row.revision_number + 1))
            return render(self._get_row(conn, rule_id))
        return await run_transaction(self.ctx.engine, work)

    async def delete(self, rule_id: str) -> None:
        def work(conn: Connection) -> str:
            row = self._get_row(conn, rule_id)
            conn.execute(delete(rules_table).where(rules_table.c.id == rule_id))
            touch_group(conn, row.security_group_id)
            return str(row.security_group_id)
        group_id = await run_transaction(self.ctx.engine, work)
        await self.ctx.firewalls.groups_changed([group_id])  # after commit
