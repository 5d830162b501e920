"""The server's services and their lifetime, with no HTTP in sight.

`running(settings, bus, tracer)` owns one server's resources, in this order:
engine -> migrations -> services -> Nova notifier (sends any pending outbox
rows) -> the agent RPC endpoint served on the bus; leaving it reverses them.
It yields `Services`, which satisfies the API's interface
(`vifwire.api.services.ApiServices`): the application (`vifwire.app`) puts it
on the FastAPI app's state; a bench or a test may drive it directly.

`Tagged` shapes the network and subnet services (synchronous, rendering no
tags) like the port service, which renders its tags in its own transaction:
every read of a taggable resource carries its tags, and writes are awaitable.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from vifwire.bus.base import SERVER_TOPIC, Bus
from vifwire.db.engine import make_engine, migrate
from vifwire.server._db import release_connections
from vifwire.server.agents import AgentService
from vifwire.server.context import Context
from vifwire.server.ip_availability import IpAvailabilityService
from vifwire.server.networks import NetworkService
from vifwire.server.notifier import NovaNotifier
from vifwire.server.ports import PortService
from vifwire.server.quotas import QuotaService
from vifwire.server.rpc import AgentRpcEndpoint
from vifwire.server.security_groups import SecurityGroupService
from vifwire.server.sg_rules import RuleService
from vifwire.server.subnetpools import SubnetPoolService
from vifwire.server.subnets import SubnetService
from vifwire.server.tags import TagService
from vifwire.settings import Settings
from vifwire.trace import Tracer

log = logging.getLogger(__name__)

Item = dict[str, Any]


class _SyncService(Protocol):
    """NetworkService and SubnetService: synchronous reads; each write is one
    transaction, awaited (`vifwire.server._db.run_transaction`)."""

    def show(self, item_id: str, /) -> Item: ...

    def list(self, filters: Mapping[str, builtins.list[Any]], visible_to: str | None = None,
             /) -> builtins.list[Item]: ...

    async def create(self, bodies: builtins.list[Item], /) -> builtins.list[Item]: ...

    async def update(self, item_id: str, body: Item, if_revision: int | None = None,
                     /) -> Item: ...

    async def delete(self, item_id: str, /) -> None: ...


class Tagged:
    """A network or subnet service whose reads (show, list, the result of update) get the
    tags of what they render from one more read; create answers without tags, as
    Neutron's body for a fresh resource has none to show."""

    def __init__(self, inner: _SyncService, tags: TagService) -> None:
        self._inner = inner
        self._tags = tags

    def _tagged(self, items: builtins.list[Item]) -> builtins.list[Item]:
        if items:
            found = self._tags.of([i["id"] for i in items])
            for item in items:
                item["tags"] = found.get(item["id"], [])
        return items

    def show(self, item_id: str) -> Item:
        return self._tagged([self._inner.show(item_id)])[0]

    def list(self, filters: Mapping[str, builtins.list[Any]],
             visible_to: str | None = None) -> builtins.list[Item]:
        return self._tagged(self._inner.list(filters, visible_to))

    async def create(self, bodies: builtins.list[Item]) -> builtins.list[Item]:
        return await self._inner.create(bodies)

    async def update(self, item_id: str, changes: Item, if_revision: int | None) -> Item:
        return self._tagged([await self._inner.update(item_id, changes, if_revision)])[0]

    async def delete(self, item_id: str) -> None:
        await self._inner.delete(item_id)


@dataclass
class Services:
    networks: Tagged
    subnets: Tagged
    ports: PortService
    agents: AgentService
    tags: TagService
    notifier: NovaNotifier
    endpoint: AgentRpcEndpoint
    context: Context
    security_groups: Tagged
    security_group_rules: RuleService
    groups: SecurityGroupService  # untagged: what `ensure_default_security_group` calls
    quotas: QuotaService
    subnetpools: Tagged
    ip_availabilities: IpAvailabilityService

    async def ensure_default_security_group(self, project_id: str) -> None:
        await self.groups.ensure_default(project_id)


def build(ctx: Context, notifier: NovaNotifier) -> Services:
    tags = TagService(ctx)
    ports, agents = PortService(ctx), AgentService(ctx)
    groups = SecurityGroupService(ctx)
    return Services(Tagged(NetworkService(ctx), tags), Tagged(SubnetService(ctx), tags),
                    ports, agents, tags, notifier, AgentRpcEndpoint(ports, agents), ctx,
                    Tagged(groups, tags), RuleService(ctx), groups, QuotaService(ctx),
                    Tagged(SubnetPoolService(ctx), tags), IpAvailabilityService(ctx))


@asynccontextmanager
async def running(settings: Settings, bus: Bus, tracer: Tracer,
                  notifier_backoff_s: float = 0.1) -> AsyncIterator[Services]:
    """One server's services, from its database to its bus endpoint (module doc)."""
    engine = make_engine(settings.effective_database_url,
                         direct_statements=settings.db_direct_statements,
                         held_connections=settings.db_held_connections,
                         threads=settings.db_threads)
    try:
        migrate(engine)
        ctx = Context(engine=engine, settings=settings, bus=bus, tracer=tracer)
        notifier = NovaNotifier(engine, settings, tracer, min_backoff_s=notifier_backoff_s)
        ctx.send_events = notifier.send
        services = build(ctx, notifier)
        notifier.start()
        try:
            await bus.serve(SERVER_TOPIC, services.endpoint)
            log.info("vifwire server ready on %s", engine.url.render_as_string())
            yield services
        finally:
            await ctx.firewalls.close()  # pending member lists, before the engine goes
            await notifier.stop()
    finally:
        release_connections(engine)
        engine.dispose()
