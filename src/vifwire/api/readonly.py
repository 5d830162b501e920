"""Read-only collections: `/v2.0/network-ip-availabilities` (computed by the server),
`/v2.0/service-providers` (service-type; vifwire has no service plugins, so its
list is empty) and dhcp_agent_scheduler's lists (vifwire runs no DHCP agent:
empty, after the network's or agent's 404). GET only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from vifwire.api import attributes, listing
from vifwire.api.resources import check_id
from vifwire.api.responses import JSONResponse
from vifwire.api.services import ReadService

router = APIRouter()
AVAILABILITIES = "/v2.0/network-ip-availabilities"
SERVICE_PROVIDER = {name: attributes.read_only(attributes.STR)
                    for name in ("service_type", "name", "default")}


def _availabilities(request: Request) -> ReadService:
    return request.app.state.services.ip_availabilities  # type: ignore[no-any-return]


def _select(item: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {k: item[k] for k in fields if k in item} if fields else item


@router.get(AVAILABILITIES)
async def list_availabilities(request: Request) -> JSONResponse:
    query = listing.parse(attributes.IP_AVAILABILITY, request.query_params.multi_items())
    service = _availabilities(request)
    items = service.list(query.filters)
    if query.sorts or query.limit:
        items = listing.sort(items, [(k if k != "id" else "network_id", a)
                                     for k, a in query.sorts])
    return JSONResponse({"network_ip_availabilities": [_select(i, query.fields)
                                                       for i in items]})


@router.get(AVAILABILITIES + "/{network_id}")
async def show_availability(request: Request, network_id: str) -> JSONResponse:
    query = listing.parse(attributes.IP_AVAILABILITY, [
        p for p in request.query_params.multi_items() if p[0] == "fields"])
    item = _availabilities(request).show(check_id(network_id))
    return JSONResponse({"network_ip_availability": _select(item, query.fields)})


@router.get("/v2.0/networks/{network_id}/dhcp-agents")
async def dhcp_agents_of_network(request: Request, network_id: str) -> JSONResponse:
    """dhcp_agent_scheduler: vifwire runs no DHCP agent, so none hosts a network."""
    request.app.state.services.networks.show(check_id(network_id))  # its 404
    return JSONResponse({"agents": []})


@router.get("/v2.0/agents/{agent_id}/dhcp-networks")
async def networks_of_dhcp_agent(request: Request, agent_id: str) -> JSONResponse:
    request.app.state.services.agents.show(check_id(agent_id))  # its 404
    return JSONResponse({"networks": []})


@router.get("/v2.0/service-providers")
async def list_service_providers(request: Request) -> JSONResponse:
    listing.parse(SERVICE_PROVIDER, request.query_params.multi_items())  # 400 on bad filters
    return JSONResponse({"service_providers": []})
