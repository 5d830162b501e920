"""Version discovery and the extensions list: only what vifwire really implements."""

from __future__ import annotations

from fastapi import APIRouter, Request

from vifwire.api.responses import JSONResponse
from vifwire.server import faults

UPDATED = "2026-01-01T00:00:00-00:00"

EXTENSIONS = [
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
    ("agent", "agent", "The agent management extension."),
    ("port-security", "Port Security", "Provides port security"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("standard-attr-description", "standard-attr-description",
     "Extension to add descriptions to standard attributes"),
    ("standard-attr-timestamp", "Resource timestamps",
     "Adds created_at and updated_at fields to all Neutron resources that have Neutron "
     "standard attributes."),
    ("standard-attr-revisions", "Resource revision numbers",
     "This extension will display the revision number of neutron resources."),
    ("revision-if-match", "If-Match constraints based on revision_number",
     "Extension indicating that If-Match based on revision_number is supported."),
    ("project-id", "project_id field enabled",
     "Extension that indicates that project_id field is enabled."),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("standard-attr-tag", "Tag support for resources with standard attribute: network, "
     "subnet, port, security_group", "Enables to set tag on resources with standard attribute."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is "
     "enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("filter-validation", "Filter parameters validation",
     "Provides validation on filter parameters."),
    ("security-group", "security-group", "The security groups extension."),
    ("stateful-security-group", "Stateful security group",
     "Indicates if the security group is stateful or not"),
    ("security-groups-normalized-cidr", "Security Group Rule normalized CIDR field",
     "Add new field with normalized remote_ip_prefix cidr in SG rule"),
    ("external-net", "Neutron external network", "Adds external network attribute to "
     "network resource."),
    ("quotas", "Quota management support", "Expose functions for quotas management per "
     "project"),
    ("quota_details", "Quota details management support", "Expose functions for quotas "
     "usage statistics per project"),
    ("quota-check-limit", "Quota engine limit check", "Support for checking the resource "
     "usage before applying a new quota limit"),
    ("extra_dhcp_opt", "Neutron Extra DHCP options", "Extra options configuration for "
     "DHCP. For example PXE boot options to DHCP clients can be specified (e.g. tftp-server, "
     "server-ip-address, bootfile-name)"),
    ("ip-substring-filtering", "IP address substring filtering", "Provides IP address "
     "substring filtering when listing ports"),
    ("subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a "
     "subnet pool"),
    ("default-subnetpools", "Default Subnetpools", "Provides ability to mark and use a "
     "subnetpool as the default."),
    ("service-type", "Neutron Service Type Management", "API for retrieving service "
     "providers for Neutron advanced services"),
    ("network-ip-availability", "Network IP Availability", "Provides IP availability data "
     "for each network and subnet."),
    ("empty-string-filtering", "Empty String Filtering Extension", "Allow filtering by "
     "attributes with empty string value"),
    ("net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a "
     "network resource."),
    ("dhcp_agent_scheduler", "DHCP Agent Scheduler", "Schedule networks among dhcp agents"),
]


def _extension(alias: str, name: str, description: str) -> dict[str, object]:
    return {"alias": alias, "name": name, "description": description, "updated": UPDATED,
            "links": []}


def _links(request: Request, path: str) -> list[dict[str, str]]:
    return [{"href": str(request.base_url).rstrip("/") + path, "rel": "self"}]


router = APIRouter()


@router.get("/")
async def versions(request: Request) -> JSONResponse:
    return JSONResponse({"versions": [
        {"id": "v2.0", "status": "CURRENT", "links": _links(request, "/v2.0/")}]})


@router.get("/v2.0")
@router.get("/v2.0/")
async def resources(request: Request) -> JSONResponse:
    names = [("network", "networks"), ("subnet", "subnets"), ("port", "ports"),
             ("agent", "agents"), ("security_group", "security-groups"),
             ("security_group_rule", "security-group-rules"), ("quota", "quotas"),
             ("subnetpool", "subnetpools"),
             ("network_ip_availability", "network-ip-availabilities"),
             ("service_provider", "service-providers")]
    return JSONResponse({"resources": [
        {"name": name, "collection": collection,
         "links": _links(request, f"/v2.0/{collection}")} for name, collection in names]})


@router.get("/v2.0/extensions")
async def extensions() -> JSONResponse:
    return JSONResponse({"extensions": [_extension(*e) for e in EXTENSIONS]})


@router.get("/v2.0/extensions/{alias}")
async def extension(alias: str) -> JSONResponse:
    for entry in EXTENSIONS:
        if entry[0] == alias:
            return JSONResponse({"extension": _extension(*entry)})
    raise faults.ExtensionNotFound(alias)
