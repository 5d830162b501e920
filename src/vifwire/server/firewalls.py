"""Security groups on the agents: each port's firewall pushed with its details, and
the casts that keep the agents' firewalls current (issue 10 item 3).

Building: `build(conn, rows)` gives the `PortFirewall` of each port row in a fixed
number of statements whatever the number of ports (its groups' rules and
statefulness in one, the members of every remote group those rules name in one),
so `get_host_ports` costs the same three queries for 1 or 1,000 ports. A port with
one group whose rules name one remote group (every port in the default group) goes
through prebuilt statements (`vifwire.db.fast`): that is the bind on the plug path.
A group's member addresses come back joined into one string by the database
(`vifwire.db.functions.joined`), one row per group: every member round reads
the whole group, and as rows a group of 1,000 members cost more than the rest of
a bind's work (bench/distributed.py --group-members).

A bind's push (`port_bound`, and a bound port's own `firewall_changed`) carries
the port's rules but no member list (`with_members=False`): an agent takes a
pushed list only for a group it does not hold yet, and holds the groups its
ports use, kept current by `sg_members_changed`. At 1,000 members each bind
read the whole group (two statements: 1.5 ms, 0.6 ms of it the worker's CPU)
and pushed ~14 KB of details, nearly all of it the list the agent dropped. The agent
reads a group it does not hold (`get_group_members`) before it wires the port.
A full sync (`get_host_ports`), `get_port_details` and a rule change's
`firewall_changed` still carry the lists.

Casting, after commit, as l2pop does (`vifwire.server.l2pop`):

- a port joined or left groups, or its addresses changed (create, update of
  security_groups / fixed_ips / allowed_address_pairs / port_security_enabled,
  delete): `sg_members_changed(group_id)` to every host with a bound port whose
  rules name that group as remote_group_id; the agent reads the list
  (`get_group_members`), so the cast carries no list (below; at 1,000 members a
  list in the cast was a read of the whole group and ~40 KB to every host per
  round, which the agent would not trust). Such casts are coalesced per group in
  rounds: a round starts `sg_members_delay_s` after the first change that found
  none pending, and every group changed meanwhile (or while a round is being read
  and sent) goes into it or the next one; while changes keep coming (within
  `sg_members_max_delay_s` of the last round), each next round waits twice as
  long as the last, up to `sg_members_max_delay_s`, so a storm of N ports in one
  group sends a few casts, not N (each makes every agent read the whole group and
  change the member flows of the group); the first change after that long
  without a round waits `sg_members_delay_s` again. (Until 2026-12-01 a round
  that found nothing pending right after its send started over, so a storm whose
  changes came during the waits, as they do, waited 50 ms each time: 3.5 casts
  per VM at 1,000 VMs over 4 hosts.) The writer does not wait
  for its round (the API answers at once); a cast only says "changed", so a later
  round only makes the agents read again. Where writers do not serialize
  (PostgreSQL, MySQL), a bind also asks for a round for the groups its rules name
  (see `ports_changed`). A bound port whose groups or port security changed also
  gets `firewall_changed` for itself (on top of `port_bound`, which carries the
  same firewall).
- a rule was created or deleted, or a group's `stateful` changed, or a group
  some rules named as remote was deleted: `firewall_changed` with the new
  firewall of each bound port of the groups concerned, one cast per host.

With several server processes, two rounds for one group in different processes
may reach an agent out of order (the older list last): so the agent takes a
cast as "changed" and reads the list (`get_group_members`, `vifwire.server.rpc`),
one read at a time per group, the last one after the last cast.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import ColumnElement, Connection, Select, bindparam, select

from vifwire.aio import cancel_and_wait
from vifwire.bus.base import BusError, NoEndpoint, agent_topic
from vifwire.db.fast import Fast
from vifwire.db.functions import SEPARATOR, joined
from vifwire.db.schema import ip_allocations, ports, security_group_port_bindings
from vifwire.db.schema import security_group_rules as rules_table
from vifwire.db.schema import security_groups as groups_table
from vifwire.messages import (
    AddressPair,
    FirewallRule,
    PortDetails,
    PortFirewall,
    remote_groups,
)
from vifwire.server._db import run_read
from vifwire.server._utils import loads
from vifwire.server.sg_rules import normalized_cidr, protocol_number

if TYPE_CHECKING:
    from vifwire.server.context import Context

log = logging.getLogger(__name__)

_BOUND = ports.c.binding_vif_type == "ovs"
_bindings = security_group_port_bindings.c



class _PerGroup:
    """A statement over some groups: prebuilt for one group (`vifwire.db.fast`: the
    plug path's case, one default group), an expanding IN for more."""

    def __init__(self, statement: Select[Any], column: ColumnElement[Any]) -> None:
        self._one = Fast(statement.where(column == bindparam("group_id")))
        self._many = statement.where(column.in_(bindparam("group_ids", expanding=True)))

    def rows(self, conn: Connection, group_ids: builtins.list[str]) -> Iterable[Any]:
        if len(group_ids) == 1:
            return self._one.execute(conn, {"group_id": group_ids[0]})
        return conn.execute(self._many, {"group_ids": group_ids})


# A group's statefulness and rules (none: one row of NULLs), oldest rule first.
_RULES = _PerGroup(select(
    groups_table.c.id.label("group_id"), groups_table.c.stateful, rules_table.c.direction,
    rules_table.c.ethertype, rules_table.c.protocol, rules_table.c.port_range_min,
    rules_table.c.port_range_max, rules_table.c.remote_ip_prefix, rules_table.c.remote_group_id)
    .select_from(groups_table.outerjoin(
        rules_table, rules_table.c.security_group_id == groups_table.c.id))
    .order_by(rules_table.c.created_at, rules_table.c.id), groups_table.c.id)
# The members' addresses, joined into one string per group by the database (a
# group of N members is one row, not N rows to make into Python objects: every
# bind and every member round reads its whole group), and their address pairs
# (few ports have any: the filter keeps the common row out of Python).
_ADDRESSES = _PerGroup(select(_bindings.security_group_id, joined(ip_allocations.c.ip_address))
                       .join(ip_allocations, ip_allocations.c.port_id == _bindings.port_id)
                       .group_by(_bindings.security_group_id), _bindings.security_group_id)
_PAIRS = _PerGroup(select(_bindings.security_group_id, ports.c.allowed_address_pairs)
                   .join(ports, ports.c.id == _bindings.port_id)
                   .where(ports.c.allowed_address_pairs != "[]"), _bindings.security_group_id)
# The hosts with a bound port whose rules name the group as remote.
_REFERRING_HOSTS = _PerGroup(
    select(rules_table.c.remote_group_id, ports.c.binding_host).distinct()
    .select_from(rules_table.join(
        security_group_port_bindings,
        _bindings.security_group_id == rules_table.c.security_group_id)
        .join(ports, ports.c.id == _bindings.port_id)).where(_BOUND),
    rules_table.c.remote_group_id)
# The bound ports of some groups, and the groups whose rules name some group.
_BOUND_PORTS_OF = (select(ports).distinct().join(
    security_group_port_bindings, _bindings.port_id == ports.c.id)
    .where(_bindings.security_group_id.in_(bindparam("group_ids", expanding=True)), _BOUND))
_NAMING = select(rules_table.c.security_group_id).distinct().where(
    rules_table.c.remote_group_id == bindparam("group_id"))


def _rule(row: Any) -> FirewallRule:
    return FirewallRule(
        security_group_id=row.group_id, direction=row.direction, ethertype=row.ethertype,
        protocol=protocol_number(row.protocol), port_range_min=row.port_range_min,
        port_range_max=row.port_range_max,
        remote_ip_prefix=normalized_cidr(row.remote_ip_prefix),
        remote_group_id=row.remote_group_id)


def _rules(conn: Connection, group_ids: builtins.list[str]
           ) -> tuple[dict[str, builtins.list[FirewallRule]], dict[str, bool]]:
    """group id -> its rules, and group id -> stateful."""
    found: dict[str, builtins.list[FirewallRule]] = defaultdict(builtins.list)
    stateful: dict[str, bool] = {}
    for row in _RULES.rows(conn, group_ids):
        stateful[row.group_id] = row.stateful
        if row.direction is not None:
            found[row.group_id].append(_rule(row))
    return found, stateful


def members(conn: Connection, group_ids: Iterable[str]
            ) -> dict[str, dict[str, builtins.list[str]]]:
    """group id -> ethertype -> the sorted addresses of its member ports: fixed IPs
    and allowed address pairs (a pair may be a CIDR)."""
    wanted = sorted(set(group_ids))
    if not wanted:
        return {}
    found: dict[str, set[str]] = {g: set() for g in wanted}
    for group_id, addresses in _ADDRESSES.rows(conn, wanted):
        found[group_id].update(addresses.split(SEPARATOR))
    for group_id, pairs in _PAIRS.rows(conn, wanted):
        found[group_id].update(p["ip_address"] for p in loads(pairs))
    return {g: {"IPv4": sorted(a for a in addresses if ":" not in a),
                "IPv6": sorted(a for a in addresses if ":" in a)}
            for g, addresses in found.items()}


def _pairs(row: Any) -> builtins.list[AddressPair]:
    return [AddressPair(ip_address=p["ip_address"], mac_address=p["mac_address"])
            for p in loads(row.allowed_address_pairs)]


def build(conn: Connection, rows: Iterable[Any], *,
          with_members: bool = True) -> dict[str, PortFirewall]:
    """port id -> its firewall, for port rows (module doc: a fixed number of queries).
    Without `with_members` (a bind's push: the module doc) no member is read and
    the firewalls carry no `remote_members`."""
    rows = builtins.list(rows)
    groups_of = {r.id: loads(r.security_groups) if r.port_security_enabled else []
                 for r in rows}
    all_groups = sorted({g for groups in groups_of.values() for g in groups})
    rules, stateful = _rules(conn, all_groups) if all_groups else ({}, {})
    remote = {r["remote_group_id"] for g in all_groups for r in rules.get(g, ())
              if r["remote_group_id"]}
    found = members(conn, remote) if with_members else {}
    firewalls = {}
    for row in rows:
        groups = groups_of[row.id]
        own_rules = [r for g in groups for r in rules.get(g, ())]
        names = sorted({r["remote_group_id"] for r in own_rules if r["remote_group_id"]})
        firewall = PortFirewall(
            port_id=row.id, port_security_enabled=row.port_security_enabled,
            security_groups=groups, stateful=all(stateful.get(g, True) for g in groups),
            rules=own_rules, allowed_address_pairs=_pairs(row))
        if with_members:
            firewall["remote_members"] = {g: found[g] for g in names}
        firewalls[row.id] = firewall
    return firewalls


def of_port(conn: Connection, row: Any, *, with_members: bool = True) -> PortFirewall:
    return build(conn, [row], with_members=with_members)[row.id]



class PortChange(Protocol):
    """What a committed port write tells this module (`server.ports._Outcome`)."""

    port_id: str
    bound: PortDetails | None  # its details now, when its agent must hear of them
    member_of: set[str]  # groups whose member list this write may have changed
    own_firewall: bool  # its own groups or port security changed


class FirewallCasts:
    """The casts of the module doc; one per server process (on `Context`)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.delay_s = ctx.settings.sg_members_delay_s
        self.max_delay_s = max(self.delay_s, ctx.settings.sg_members_max_delay_s)
        self._pending: set[str] = set()  # groups for the next round
        self._clock = time.monotonic  # (tests step it with their sleeps)
        self._delay = self.delay_s  # the next round's wait
        self._last_round = -math.inf  # when the last round was sent
        self._worker: asyncio.Task[None] | None = None  # runs rounds while any is pending
        self.rounds = 0  # member rounds sent (for tests and benches)

    # -- after a port write --------------------------------------------------

    async def ports_changed(self, changes: Iterable[PortChange]) -> None:
        changed: set[str] = set()
        own: builtins.list[PortDetails] = []
        serialized = self.ctx.engine.dialect.name == "sqlite"  # one writer at a time
        for change in changes:
            changed |= change.member_of
            bound = change.bound
            if bound is None or "firewall" not in bound:
                continue
            if change.own_firewall:
                own.append(bound)
            if not serialized:
                # Under READ COMMITTED a bind may have read the members before a
                # new member committed, whose round ran before this bind committed
                # and so did not count this host: a round after the bind closes that.
                changed |= set(remote_groups(bound["firewall"]))
        for details in own:
            await self._cast(details["host"], "firewall_changed",
                             firewalls=[details["firewall"]])
        if changed:
            await self.members_changed(changed)

    async def members_changed(self, group_ids: Iterable[str]) -> None:
        """Send these groups' member lists in the next round (module doc)."""
        self._pending |= set(group_ids)
        if self._pending and (self._worker is None or self._worker.done()):
            self._worker = asyncio.create_task(self._rounds(), name="vw-sg-members")

    async def _rounds(self) -> None:
        if self._clock() - self._last_round >= self.max_delay_s:
            self._delay = self.delay_s  # quiet for a while: a lone change goes soon
        while self._pending:
            await asyncio.sleep(self._delay)  # gather what else changes meanwhile
            groups, self._pending = self._pending, set()
            try:
                await self._send_members(groups)
            except Exception:  # the next change sends whole lists again
                log.exception("could not send the members of groups %s", sorted(groups))
            self.rounds += 1
            self._last_round = self._clock()
            # A change before max_delay_s from now is still the storm's.
            self._delay = min(2 * self._delay, self.max_delay_s)

    async def settled(self) -> None:
        """Wait until every round asked for so far has been sent."""
        while self._worker is not None and not self._worker.done():
            await asyncio.wait([self._worker])

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is pending (within `timeout`), then stop."""
        try:
            await asyncio.wait_for(self.settled(), timeout)
        except TimeoutError:
            if self._worker is not None:
                await cancel_and_wait(self._worker)

    async def _send_members(self, groups: set[str]) -> None:
        def work(conn: Connection) -> dict[str, set[str]]:
            hosts: dict[str, set[str]] = defaultdict(set)
            for group_id, host in _REFERRING_HOSTS.rows(conn, sorted(groups)):
                hosts[group_id].add(host)
            return hosts
        hosts = await run_read(self.ctx.engine, work)
        for group_id, targets in hosts.items():
            for host in sorted(targets):
                await self._cast(host, "sg_members_changed", group_id=group_id)

    # -- after a rule or group write -----------------------------------------

    async def groups_changed(self, group_ids: Iterable[str]) -> None:
        """The rules or statefulness of these groups changed: new firewalls for
        their bound ports, one cast per host."""
        wanted = sorted(set(group_ids))
        if not wanted:
            return

        def work(conn: Connection) -> dict[str, builtins.list[PortFirewall]]:
            rows = builtins.list(conn.execute(_BOUND_PORTS_OF, {"group_ids": wanted}))
            firewalls = build(conn, rows)
            by_host: dict[str, builtins.list[PortFirewall]] = defaultdict(builtins.list)
            for row in rows:
                by_host[row.binding_host].append(firewalls[row.id])
            return by_host
        for host, firewalls in (await run_read(self.ctx.engine, work)).items():
            await self._cast(host, "firewall_changed", firewalls=firewalls)

    async def _cast(self, host: str, method: str, **kwargs: Any) -> None:
        try:
            await self.ctx.bus.cast(agent_topic(host), method, **kwargs)
        except NoEndpoint:
            log.info("no agent on %s for %s; it gets it at its full sync", host, method)
        except BusError:
            log.warning("could not cast %s to %s", method, host, exc_info=True)


def naming(conn: Connection, group_id: str) -> builtins.list[str]:
    """The groups with a rule naming `group_id` as remote (they lose it if it goes)."""
    return [g for (g,) in conn.execute(_NAMING, {"group_id": group_id}) if g != group_id]
