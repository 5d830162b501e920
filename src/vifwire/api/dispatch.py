"""The collection routes' fast way in: `/v2.0/<collection>[/<id>]` without FastAPI routing.

Every port a VM boots with costs two requests (create, bind), so the per-request
cost of the framework is paid twice per VM. FastAPI walks its route table and
solves each route's dependencies per request; for these routes, whose handlers
take just the request and the id, that was about as much CPU as the SQL they run.
The app answers them from a dict lookup on (method, collection, has id) with the
same handlers FastAPI has registered, and turns errors into the same NeutronError
bodies. Everything else (tags, meta, OpenAPI, HEAD, 405s, trailing
slashes) goes on to FastAPI unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from vifwire.api.auth import Gate
from vifwire.api.errors import fault_response
from vifwire.api.resources import Handler, Handlers, Resource

PREFIX = "/v2.0/"


def route_table(resources: Iterable[tuple[Resource, Handlers]]) -> dict[tuple[str, str, bool],
                                                                          Handler]:
    """(method, collection, addressed by id) -> handler."""
    table: dict[tuple[str, str, bool], Handler] = {}
    for resource, handlers in resources:
        name = resource.collection
        table[("GET", name, False)] = handlers.list
        table[("GET", name, True)] = handlers.show
        table[("PUT", name, True)] = handlers.update
        table[("DELETE", name, True)] = handlers.delete
        if handlers.create is not None:
            table[("POST", name, False)] = handlers.create
    return table


class DispatchingFastAPI(FastAPI):
    """FastAPI that answers the collection routes itself, before its middleware stack.

    FastAPI wraps every request in its own layers (error pages, telemetry that
    looks up OpenTelemetry's providers per request, a body limit, our CatchAll)
    before routing. The collection routes need none of them: `_serve` turns any
    error into a NeutronError body itself, and `json_body` enforces the body limit.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Filled once the routes are registered; until then every request goes to FastAPI.
        self.route_table: dict[tuple[str, str, bool], Handler] = {}
        # Every request passes it first, whichever way it is routed (vifwire.api.auth).
        self.gate: Gate | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.gate is not None:
                refusal = await self.gate.admit(scope)
                if refusal is not None:
                    await refusal(scope, receive, send)
                    return
            path: str = scope["path"]
            if path.startswith(PREFIX):
                collection, slash, item_id = path[len(PREFIX):].partition("/")
                # An empty or slashed id is not ours: FastAPI answers those as before.
                if not slash or (item_id and "/" not in item_id):
                    handler = self.route_table.get((scope["method"], collection, bool(slash)))
                    if handler is not None:
                        scope["app"] = self  # handlers find the services on app.state
                        await _serve(handler, item_id if slash else None, scope, receive, send)
                        return
        await super().__call__(scope, receive, send)


async def _serve(handler: Handler, item_id: str | None, scope: Scope, receive: Receive,
                 send: Send) -> None:
    request = Request(scope, receive)
    try:
        response = await (handler(request) if item_id is None else handler(request, item_id))
    except Exception as exc:  # every error leaves as a NeutronError body
        response = fault_response(exc)
    await response(scope, receive, send)
