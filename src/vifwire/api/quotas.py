"""The quotas and quota_details extensions: `/v2.0/quotas`, Neutron's shapes.

- `GET /v2.0/quotas`: the projects whose limits differ from the defaults;
- `GET|PUT|DELETE /v2.0/quotas/<project>`: show, set (`{"quota": {...}}`), reset;
- `GET /v2.0/quotas/<project>/default` and `/details` (limit, used, reserved;
  also as `/details.json`, the path Tempest's client uses);
- `GET /v2.0/quotas/tenant`: the calling project.

Not a `Resource`: quotas have no ids, tags, revisions or filters. Who may read
and change another project's quotas (admin only, on Neutron) is policy, decided
by the request context, not here.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from vifwire.api.auth import context_of
from vifwire.api.resources import check_id, json_body
from vifwire.api.responses import JSONResponse
from vifwire.api.services import QuotasService
from vifwire.server import faults

router = APIRouter()


def _caller_project(request: Request) -> str:
    """The calling project, from the request's context (`vifwire.api.auth`)."""
    return context_of(request.scope).project_id


def _quotas(request: Request) -> QuotasService:
    return request.app.state.services.quotas  # type: ignore[no-any-return]


@router.get("/v2.0/quotas")
async def list_quotas(request: Request) -> JSONResponse:
    return JSONResponse({"quotas": _quotas(request).list()})


@router.get("/v2.0/quotas/tenant")
@router.get("/v2.0/quotas/project")
async def own_project(request: Request) -> JSONResponse:
    project = _caller_project(request)
    return JSONResponse({"tenant": {"tenant_id": project, "project_id": project}})


@router.get("/v2.0/quotas/{project_id}")
async def show_quota(request: Request, project_id: str) -> JSONResponse:
    return JSONResponse({"quota": _quotas(request).show(check_id(project_id))})


@router.get("/v2.0/quotas/{project_id}/default")
async def default_quota(request: Request, project_id: str) -> JSONResponse:
    return JSONResponse({"quota": _quotas(request).default(check_id(project_id))})


@router.get("/v2.0/quotas/{project_id}/details")
@router.get("/v2.0/quotas/{project_id}/details.json")  # what Tempest's client asks for
async def quota_details(request: Request, project_id: str) -> JSONResponse:
    return JSONResponse({"quota": _quotas(request).details(check_id(project_id))})


@router.put("/v2.0/quotas/{project_id}")
async def update_quota(request: Request, project_id: str) -> JSONResponse:
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("quota"), dict) or len(body) != 1:
        raise faults.BadRequest("Unable to find 'quota' in request body")
    updated = await _quotas(request).update(check_id(project_id), body["quota"])
    return JSONResponse({"quota": updated})


@router.delete("/v2.0/quotas/{project_id}", status_code=204)
async def reset_quota(request: Request, project_id: str) -> Response:
    await _quotas(request).reset(check_id(project_id))
    return Response(status_code=204)
