"""Generic Neutron collection routes: list, show, create (single and bulk), update, delete.

A `Resource` names the collection, its attribute map, how to reach its service
(a typed accessor into `vifwire.api.services.ApiServices`) and what it supports:
POST, tags and If-Match, each declared, none inferred. One factory builds the
five routes for each. The services render each item with its tags; this layer
applies `listing` (tag filters, sort, page, links) to what a service's `list`
returned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from vifwire.api import attributes, listing, sg_attributes
from vifwire.api.attributes import Attr
from vifwire.api.auth import context_of
from vifwire.api.authz import Enforcer
from vifwire.api.responses import JSONResponse
from vifwire.api.services import ApiServices, CreatableService, PagedService, ResourceService
from vifwire.server import faults


@dataclass(frozen=True)
class Resource:
    collection: str  # "networks"
    member: str  # "network"
    spec: Mapping[str, Attr]
    service: Callable[[ApiServices], ResourceService]
    # POST (single and bulk); None: the collection is read, updated and deleted only.
    creator: Callable[[ApiServices], CreatableService] | None = None
    taggable: bool = True  # standard-attr-tag: tag routes, tag filters
    if_match: bool = True  # revision_number constraints on PUT and DELETE
    # Awaited before a list, with the project it is for (the project_id filter's, else
    # the request's): security groups make the project's default group on first use.
    before_list: Callable[[ApiServices, str], Awaitable[None]] | None = None
    # Its service pages lists itself (in SQL); None: `listing` pages what `list` returned.
    pager: Callable[[ApiServices], PagedService] | None = None

    @property
    def key(self) -> str:
        """The collection's key in bodies: its path with underscores (security_groups)."""
        return self.collection.replace("-", "_")

    @property
    def creatable(self) -> bool:
        return self.creator is not None


# Neutron's own limit: oslo.middleware's max_request_body_size default. It keeps
# a client from making the server hold an arbitrarily large body in memory.
MAX_BODY_BYTES = 114688


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


async def json_body(request: Request) -> Any:
    """The request's JSON body. Only a JSON content type is read: a page of another
    origin can POST text/plain (or a typeless blob) without a CORS preflight."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise faults.RequestTooLarge(MAX_BODY_BYTES)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # also bounds a chunked body with no length
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise faults.RequestTooLarge(MAX_BODY_BYTES)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise faults.BadRequest("Resource body required")
    if not _is_json(request.headers.get("content-type", "")):
        raise faults.UnsupportedMediaType()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise faults.BadRequest("Malformed request body") from None


def _if_revision(request: Request) -> int | None:
    header = request.headers.get("if-match")
    if not header:
        return None
    key, _, value = header.partition("=")
    value = value.strip()  # ASCII digits only: "²".isdigit() is True, int() refuses it
    if key.strip() != "revision_number" or not (value.isascii() and value.isdigit()
                                                and len(value) <= 18):
        raise faults.BadRequest(f"Invalid If-Match header {header!r}; expected "
                                "revision_number=<int>")
    return int(value)


def _select(item: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {k: item[k] for k in fields if k in item} if fields else item


def check_id(item_id: str) -> str:
    """Ids are matched as text; one the database cannot even hold is simply not found."""
    if "\x00" in item_id or len(item_id) > 255:
        raise faults.NotFound("The resource could not be found.")
    return item_id


Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class Handlers:
    """One resource's five operations, as plain `(request[, item_id]) -> Response`."""

    list: Handler
    show: Handler
    update: Handler
    delete: Handler
    create: Handler | None


def handlers_for(resource: Resource, enforcer: Enforcer) -> Handlers:
    """The five operations, each checked by `enforcer` (Neutron's policy) for the
    request's context (`vifwire.api.auth`)."""
    collection, member, spec = resource.key, resource.member, resource.spec
    pick, if_match, before_list = resource.service, resource.if_match, resource.before_list
    pager = resource.pager

    def service(request: Request) -> ResourceService:
        return pick(request.app.state.services)

    async def list_(request: Request) -> Response:
        query = listing.parse(spec, request.query_params.multi_items())
        ctx = context_of(request.scope)
        services = request.app.state.services
        if before_list is not None:
            named = query.filters.get("project_id") or query.filters.get("tenant_id")
            await before_list(services, str(named[0]) if named and ctx.is_admin
                              else ctx.project_id)
        svc = service(request)
        items = None
        # The service's own pager answers for a caller who may see every row and
        # attribute (an admin; every caller under noauth); policy filters the rest.
        if pager is not None and not query.tag_filters and enforcer.exempt(ctx):
            items = pager(services).page(
                query.filters, fields=query.fields, sorts=query.sorts, limit=query.limit,
                marker=None if query.marker is None else check_id(query.marker),
                page_reverse=query.page_reverse)
        if items is None:
            items = enforcer.listed(ctx, svc.list(query.filters, ctx.visible_to))
            if query.tag_filters:
                items = [i for i in items if listing.tags_match(i["tags"], query.tag_filters)]
            if query.sorts or query.limit:
                items = listing.sort(items, query.sorts)
            items = listing.page(items, query, lambda marker: enforcer.shown(
                ctx, services, svc.show(check_id(marker))))
        body: dict[str, Any] = {collection: [_select(i, query.fields) for i in items]}
        if query.limit:
            body[f"{collection}_links"] = listing.links(request.url, items, query)
        return JSONResponse(body)

    async def show(request: Request, item_id: str) -> Response:
        fields = [p for p in request.query_params.multi_items() if p[0] == "fields"]
        query = listing.parse(spec, fields) if fields else None
        item = enforcer.shown(context_of(request.scope), request.app.state.services,
                              service(request).show(check_id(item_id)))
        return JSONResponse({member: _select(item, query.fields) if query else item})

    async def update(request: Request, item_id: str) -> Response:
        check_id(item_id)
        body = await json_body(request)
        if not isinstance(body, dict) or member not in body or len(body) != 1:
            raise faults.BadRequest(f"Unable to find '{member}' in request body")
        ctx = context_of(request.scope)
        changes = attributes.validate_body(spec, body[member], False, ctx.project_id)
        expected = _if_revision(request) if if_match else None
        svc = service(request)
        if not enforcer.exempt(ctx):
            enforcer.updating(ctx, request.app.state.services, svc.show(item_id), changes)
        updated = await svc.update(item_id, changes, expected)
        return JSONResponse({member: enforcer.listed(ctx, [updated])[0]})

    async def delete(request: Request, item_id: str) -> Response:
        svc = service(request)
        ctx = context_of(request.scope)
        if not enforcer.exempt(ctx):
            enforcer.deleting(ctx, request.app.state.services, svc.show(check_id(item_id)))
        expected = _if_revision(request) if if_match else None
        if expected is not None:
            # Checked before the delete, not inside its transaction: a racing
            # update between the two is not caught.
            current = svc.show(check_id(item_id))["revision_number"]
            if current != expected:
                raise faults.RevisionNumberConstraintFailed(expected, current)
        await svc.delete(check_id(item_id))
        return Response(status_code=204)

    if resource.creator is None:
        return Handlers(list_, show, update, delete, None)
    pick_creator = resource.creator  # a local: the closure sees it as set

    async def create(request: Request) -> Response:
        body = await json_body(request)
        ctx = context_of(request.scope)
        project = ctx.project_id
        services = request.app.state.services
        svc = pick_creator(services)
        if isinstance(body, dict) and isinstance(body.get(collection), list) \
                and len(body) == 1:
            if not body[collection]:
                raise faults.BadRequest("Resources required")
            items = [attributes.validate_body(spec, b, True, project)
                     for b in body[collection]]
            for item in items:
                enforcer.creating(ctx, services, item)
            created = await svc.create(items)
            return JSONResponse({collection: enforcer.listed(ctx, created)}, status_code=201)
        if not isinstance(body, dict) or member not in body or len(body) != 1:
            raise faults.BadRequest(f"Unable to find '{member}' in request body")
        item = attributes.validate_body(spec, body[member], True, project)
        enforcer.creating(ctx, services, item)
        created = await svc.create([item])
        return JSONResponse({member: enforcer.listed(ctx, created)[0]}, status_code=201)

    return Handlers(list_, show, update, delete, create)


def router_for(resource: Resource, handlers: Handlers) -> APIRouter:
    """The FastAPI routes of a resource: what OpenAPI lists, and what serves a request
    the fast dispatcher (`vifwire.api.dispatch`) leaves to FastAPI."""
    router = APIRouter()
    base = f"/v2.0/{resource.collection}"
    router.add_api_route(base, handlers.list, methods=["GET"], name=f"list_{resource.collection}")
    router.add_api_route(base + "/{item_id}", handlers.show, methods=["GET"],
                         name=f"show_{resource.member}")
    if handlers.create is not None:
        router.add_api_route(base, handlers.create, methods=["POST"], status_code=201,
                             name=f"create_{resource.member}")
    router.add_api_route(base + "/{item_id}", handlers.update, methods=["PUT"],
                         name=f"update_{resource.member}")
    router.add_api_route(base + "/{item_id}", handlers.delete, methods=["DELETE"],
                         status_code=204, name=f"delete_{resource.member}")
    return router


def _networks(services: ApiServices) -> CreatableService:
    return services.networks


def _subnets(services: ApiServices) -> CreatableService:
    return services.subnets


def _ports(services: ApiServices) -> PagedService:
    return services.ports


def _agents(services: ApiServices) -> ResourceService:
    return services.agents


def _security_groups(services: ApiServices) -> CreatableService:
    return services.security_groups


def _security_group_rules(services: ApiServices) -> CreatableService:
    return services.security_group_rules


def _subnetpools(services: ApiServices) -> CreatableService:
    return services.subnetpools


async def _default_group(services: ApiServices, project_id: str) -> None:
    await services.ensure_default_security_group(project_id)


RESOURCES = (
    Resource("networks", "network", attributes.NETWORK, _networks, _networks),
    Resource("subnets", "subnet", attributes.SUBNET, _subnets, _subnets),
    Resource("ports", "port", attributes.PORT, _ports, _ports, pager=_ports),
    # Agents have no revision_number: If-Match is not theirs to honour.
    Resource("agents", "agent", attributes.AGENT, _agents, taggable=False, if_match=False),
    Resource("security-groups", "security_group", sg_attributes.SECURITY_GROUP,
             _security_groups, _security_groups, before_list=_default_group),
    # Neutron tags groups, not rules.
    Resource("security-group-rules", "security_group_rule", sg_attributes.SECURITY_GROUP_RULE,
             _security_group_rules, _security_group_rules, taggable=False,
             before_list=_default_group),
    Resource("subnetpools", "subnetpool", attributes.SUBNETPOOL, _subnetpools, _subnetpools),
)
