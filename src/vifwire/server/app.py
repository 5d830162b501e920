"""The server application: FastAPI app whose lifespan owns the DB, the RPC endpoint
and the Nova notifier.

Startup order: engine -> migrations -> services -> notifier (sends any pending
outbox rows) -> serve the agent endpoint on the bus. Shutdown reverses it. The
app runs on the same event loop as the agent, so everything here is either a
short DB statement or an await.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI

from vifwire.api import dispatch, errors, meta, openapi, resources, tags
from vifwire.api.responses import JSONResponse
from vifwire.bus.base import SERVER_TOPIC, Bus
from vifwire.db.engine import make_engine, migrate
from vifwire.server._db import release_connections
from vifwire.server.agents import AgentService
from vifwire.server.context import Context
from vifwire.server.networks import NetworkService
from vifwire.server.notifier import NovaNotifier
from vifwire.server.ports import PortService
from vifwire.server.rpc import AgentRpcEndpoint
from vifwire.server.subnets import SubnetService
from vifwire.server.tags import TagService
from vifwire.settings import Settings
from vifwire.trace import Tracer

log = logging.getLogger(__name__)
_BUILD_LOCK = threading.Lock()


@dataclass
class Services:
    networks: NetworkService
    subnets: SubnetService
    ports: PortService
    agents: AgentService
    notifier: NovaNotifier
    endpoint: AgentRpcEndpoint
    context: Context
    tags: TagService = field(init=False)

    def __post_init__(self) -> None:
        self.tags = TagService(self.context)


def create_app(settings: Settings, bus: Bus, tracer: Tracer,
               notifier_backoff_s: float = 0.1) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.effective_database_url)
        try:
            migrate(engine)
            ctx = Context(engine=engine, settings=settings, bus=bus, tracer=tracer)
            notifier = NovaNotifier(engine, settings, tracer, min_backoff_s=notifier_backoff_s)
            ctx.send_events = notifier.send
            ports, agents = PortService(ctx), AgentService(ctx)
            services = Services(NetworkService(ctx), SubnetService(ctx), ports, agents,
                                notifier, AgentRpcEndpoint(ports, agents), ctx)
            app.state.services = services
            notifier.start()
            try:
                await bus.serve(SERVER_TOPIC, services.endpoint)
                log.info("vifwire server ready on %s", engine.url.render_as_string())
                yield
            finally:
                await notifier.stop()
        finally:
            release_connections(engine)
            engine.dispose()

    # FastAPI (through pydantic) analyses each route's signature when it is added;
    # two apps built at once on two threads (two server instances in one process,
    # as the tests run them) raced in there and got spurious pydantic warnings.
    with _BUILD_LOCK:
        app = dispatch.DispatchingFastAPI(
            title="vifwire", default_response_class=JSONResponse, lifespan=lifespan,
            docs_url=None, redoc_url=None, openapi_url="/openapi.json")
        errors.install(app)
        openapi.install(app)
        app.include_router(meta.router)
        handlers = [(resource, resources.handlers_for(resource))
                    for resource in resources.RESOURCES]
        for resource, resource_handlers in handlers:
            app.include_router(resources.router_for(resource, resource_handlers))
        for router in tags.ROUTERS:
            app.include_router(router)
        # The collection routes skip FastAPI's middleware and routing.
        if settings.fast_dispatch:
            app.route_table = dispatch.route_table(handlers)
    return app
