"""The tag routes of Neutron's `standard-attr-tag`, for networks, subnets and ports.

    GET    /v2.0/{collection}/{id}/tags         -> 200 {"tags": [...]}
    PUT    /v2.0/{collection}/{id}/tags         -> 200 {"tags": [...]}  (replace all)
    DELETE /v2.0/{collection}/{id}/tags         -> 204
    GET    /v2.0/{collection}/{id}/tags/{tag}   -> 204, or 404 TagNotFound
    PUT    /v2.0/{collection}/{id}/tags/{tag}   -> 201
    DELETE /v2.0/{collection}/{id}/tags/{tag}   -> 204, or 404 TagNotFound
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from vifwire.api.auth import context_of
from vifwire.api.authz import Enforcer
from vifwire.api.resources import RESOURCES, check_id, json_body
from vifwire.api.responses import JSONResponse
from vifwire.api.services import ApiServices, TagsService
from vifwire.server import faults

MAX_TAG_LEN = 60
TAGGABLE = tuple(r.collection for r in RESOURCES if r.taggable)
_SHOW = {r.collection: r.service for r in RESOURCES}


def validate_tag(tag: Any) -> str:
    """A tag is a non-empty string of at most 60 characters without commas."""
    if not isinstance(tag, str) or not tag:
        raise faults.BadRequest(f"Invalid tag {tag!r}: a tag must be a non-empty string.")
    if len(tag) > MAX_TAG_LEN:
        raise faults.BadRequest(f"'{tag}' exceeds maximum length of {MAX_TAG_LEN}")
    if "," in tag or "\x00" in tag:
        raise faults.BadRequest(f"Invalid tag {tag!r}: commas and NUL are not allowed.")
    return tag


def _service(request: Request) -> TagsService:
    services: ApiServices = request.app.state.services
    return services.tags


def _guard(request: Request, collection: str, item_id: str, write: bool = True) -> str:
    """A resource's tags are read as it is shown and written as it is updated (policy)."""
    check_id(item_id)
    ctx = context_of(request.scope)
    enforcer: Enforcer = request.app.state.enforcers[collection]
    if not enforcer.exempt(ctx):
        services: ApiServices = request.app.state.services
        item = _SHOW[collection](services).show(item_id)
        if write:
            enforcer.updating(ctx, services, item, {})
        else:
            enforcer.visible(ctx, services, item)
    return item_id


def router_for(collection: str) -> APIRouter:
    router = APIRouter()
    base = f"/v2.0/{collection}/{{item_id}}/tags"

    @router.get(base)
    async def list_tags(request: Request, item_id: str) -> JSONResponse:
        return JSONResponse({"tags": _service(request).get(
            collection, _guard(request, collection, item_id, write=False))})

    @router.put(base)
    async def replace_tags(request: Request, item_id: str) -> JSONResponse:
        _guard(request, collection, item_id)
        body = await json_body(request)
        if not isinstance(body, dict) or set(body) != {"tags"} \
                or not isinstance(body["tags"], list):
            raise faults.BadRequest("Invalid tags body: expected {\"tags\": [<tag>, ...]}")
        wanted = [validate_tag(t) for t in body["tags"]]
        return JSONResponse({"tags": await _service(request).replace(collection, item_id, wanted)})

    @router.delete(base, status_code=204)
    async def clear_tags(request: Request, item_id: str) -> Response:
        await _service(request).clear(collection, _guard(request, collection, item_id))
        return Response(status_code=204)

    @router.get(base + "/{tag}", status_code=204)
    async def check_tag(request: Request, item_id: str, tag: str) -> Response:
        _service(request).has(collection, _guard(request, collection, item_id, write=False),
                              tag)
        return Response(status_code=204)

    @router.put(base + "/{tag}", status_code=201)
    async def add_tag(request: Request, item_id: str, tag: str) -> Response:
        await _service(request).add(collection, _guard(request, collection, item_id),
                                    validate_tag(tag))
        return Response(status_code=201)

    @router.delete(base + "/{tag}", status_code=204)
    async def remove_tag(request: Request, item_id: str, tag: str) -> Response:
        await _service(request).remove(collection, _guard(request, collection, item_id), tag)
        return Response(status_code=204)

    return router


ROUTERS = [router_for(collection) for collection in TAGGABLE]
