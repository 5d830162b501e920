"""The application: the Neutron HTTP API (`vifwire.api`) over the server's services
(`vifwire.server`), assembled here because neither layer may know the other's
insides: the API calls the Protocols of `vifwire.api.services`, and the server
knows nothing of HTTP.

The app's lifespan enters `vifwire.server.services.running` (database,
migrations, services, Nova notifier, agent endpoint on the bus) and leaves it on
shutdown. The app runs on the stack's main event loop; the agent has a thread
and a loop of its own (`vifwire.stack`), so everything a request does here is
either a short database statement or an await.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vifwire.api import (
    auth,
    authz,
    dispatch,
    errors,
    meta,
    openapi,
    quotas,
    readonly,
    resources,
    tags,
)
from vifwire.api.responses import JSONResponse
from vifwire.api.services import ApiServices
from vifwire.bus.base import Bus
from vifwire.server.policy import Policy
from vifwire.server.services import running
from vifwire.settings import Settings
from vifwire.trace import Tracer

_BUILD_LOCK = threading.Lock()


def create_app(settings: Settings, bus: Bus, tracer: Tracer,
               notifier_backoff_s: float = 0.1) -> FastAPI:
    gate = auth.Gate(settings)
    policy = Policy.from_file(settings.policy_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings, bus, tracer, notifier_backoff_s) as services:
            api_services: ApiServices = services  # mypy checks the server fits the API
            app.state.services = api_services
            try:
                yield
            finally:
                await gate.close()

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
        app.include_router(quotas.router)
        app.include_router(readonly.router)
        app.gate = gate
        enforcers = {r.collection: authz.Enforcer(policy, r.key, r.member)
                     for r in resources.RESOURCES}
        app.state.enforcers = enforcers
        handlers = [(resource, resources.handlers_for(resource, enforcers[resource.collection]))
                    for resource in resources.RESOURCES]
        for resource, resource_handlers in handlers:
            app.include_router(resources.router_for(resource, resource_handlers))
        for router in tags.ROUTERS:
            app.include_router(router)
        # The collection routes skip FastAPI's middleware and routing
        # (Settings.fast_dispatch; off: FastAPI routes every request).
        if settings.fast_dispatch:
            app.route_table = dispatch.route_table(handlers)
    return app
