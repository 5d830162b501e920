"""The OpenAPI 3.1 description served at /openapi.json, derived from the code.

Neutron's routes read raw JSON (one handler serves single and bulk create), so
FastAPI cannot infer their bodies. Instead every schema here is computed from
the same tables the handlers use: the attribute maps (`attributes`: what each
resource renders, accepts on POST and PUT, filters and sorts on), `RESOURCES`,
the taggable collections and the extensions list. Routes this module does not
describe (added elsewhere later) still appear, with FastAPI's generic entry,
and `tests/server/test_openapi.py` fails if any route is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from vifwire.api import attributes
from vifwire.api.attributes import Attr, Schema
from vifwire.api.listing import INT_RANGE, TAG_FILTERS
from vifwire.api.resources import RESOURCES, Resource
from vifwire.api.tags import MAX_TAG_LEN, TAGGABLE
from vifwire.settings import QUOTA_RESOURCES

JSON = "application/json"
ERROR_REF = {"$ref": "#/components/schemas/NeutronError"}
ERROR_SCHEMA: Schema = {
    "type": "object", "required": ["NeutronError"], "additionalProperties": False,
    "properties": {"NeutronError": {
        "type": "object", "required": ["type", "message", "detail"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                       "detail": {"type": "string"}}}}}
LINKS: Schema = {"type": "array", "items": {
    "type": "object", "required": ["rel", "href"],
    "properties": {"rel": {"enum": ["self", "next", "previous"]}, "href": {"type": "string"}}}}
_ERRORS = {400: "Bad request", 404: "Not found", 409: "Conflict",
           412: "Revision number constraint failed", 503: "Service unavailable"}


def _ok(description: str, schema: Schema | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _responses(ok: dict[int, dict[str, Any]], *errors: int) -> dict[str, Any]:
    found: dict[str, Any] = {str(code): body for code, body in ok.items()}
    for code in (400, *errors):
        found[str(code)] = _ok(_ERRORS[code], ERROR_REF)
    return found


def _ref(resource: Resource) -> Schema:
    return {"$ref": f"#/components/schemas/{resource.member}"}


def _rendered(spec: Mapping[str, Attr]) -> Schema:
    """What the API returns: no `required`, since `fields=` may select any subset."""
    return {"type": "object", "additionalProperties": False,
            "properties": {name: dict(attr.schema) for name, attr in spec.items()}}


def _input(attr: Attr) -> Schema:
    known = attributes.INPUT_SCHEMAS.get(attr.convert)
    if known is not None:
        return dict(known)
    if attr.schema.get("type") == "array":
        items = attr.schema["items"]
        if items.get("type") == "object":
            items = {"type": "object", "additionalProperties": False,
                     "properties": items["properties"]}
        return {"type": ["array", "null"], "items": items}
    return dict(attr.schema)


def _body(spec: Mapping[str, Attr], create: bool) -> Schema:
    allowed = {n: a for n, a in spec.items() if (a.post if create else a.put)}
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False,
                              "properties": {n: _input(a) for n, a in allowed.items()}}
    required = [n for n, a in allowed.items() if create and a.required]
    if required:
        schema["required"] = required
    return schema


def _envelope(key: str, schema: Schema) -> Schema:
    return {"type": "object", "required": [key], "additionalProperties": False,
            "properties": {key: schema}}


def _query(name: str, schema: Schema, description: str = "") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if schema.get("type") == "array":
        param.update(style="form", explode=True)
    if description:
        param["description"] = description
    return param


def _filter_schema(attr: Attr) -> Schema | None:
    types = attr.types
    if not attr.sortable and "enum" not in attr.schema:
        return None
    if "boolean" in types:
        item: Schema = {"type": "boolean"}
    elif "integer" in types or all(isinstance(v, int) for v in attr.schema.get("enum", [""])):
        item = {"type": "integer", "minimum": INT_RANGE[0], "maximum": INT_RANGE[1]}
    else:
        item = {"type": "string"}
    return {"type": "array", "items": item}


def _list_params(resource: Resource) -> list[dict[str, Any]]:
    spec = resource.spec
    sortable = [n for n, a in spec.items() if a.sortable]
    params = [
        _query("fields", {"type": "array", "items": {"type": "string"}},
               "Attributes to return (repeat the parameter); unknown ones are ignored."),
        _query("limit", {"type": "integer", "minimum": 0}, "Page size; 0 means no limit."),
        _query("marker", {"type": "string"}, "Id of the last item seen (with limit)."),
        _query("page_reverse", {"type": "boolean"}),
        _query("sort_key", {"type": "array", "items": {"enum": sortable}}),
        _query("sort_dir", {"type": "array", "items": {"enum": ["asc", "desc"]}}),
    ]
    if resource.taggable:
        params += [_query(name, {"type": "string"}, "Comma-separated tags.")
                   for name in TAG_FILTERS]
    for name, attr in spec.items():
        schema = _filter_schema(attr)
        if schema is not None:
            params.append(_query(name, schema, "Filter; repeated values OR together."))
    if "fixed_ips" in spec:
        params.append(_query("fixed_ips", {"type": "array", "items": {"type": "string"}},
                             "ip_address=<ip> or subnet_id=<id>."))
    return params


ID_PARAM = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}}
IF_MATCH = {"name": "If-Match", "in": "header", "required": False,
            "schema": {"type": "string", "pattern": "^revision_number=[0-9]+$"}}


def _resource_paths(resource: Resource) -> dict[str, Any]:
    collection, member = resource.key, resource.member  # body keys; paths use .collection
    one = _envelope(member, _ref(resource))
    many = {"type": "object", "required": [collection], "additionalProperties": False,
            "properties": {collection: {"type": "array", "items": _ref(resource)},
                           f"{collection}_links": LINKS}}
    # If-Match (and its 412) only where the resource honours it.
    if_match, constrained = ([IF_MATCH], (412,)) if resource.if_match else ([], ())
    base: dict[str, Any] = {"get": {
        "operationId": f"list_{collection}", "parameters": _list_params(resource),
        "responses": _responses({200: _ok(f"The {collection}", many)}, 404)}}
    item: dict[str, Any] = {
        "parameters": [ID_PARAM],
        "get": {"operationId": f"show_{member}",
                "parameters": [_query("fields", {"type": "array",
                                                 "items": {"type": "string"}})],
                "responses": _responses({200: _ok(f"The {member}", one)}, 404)},
        "put": {"operationId": f"update_{member}", "parameters": if_match,
                "requestBody": {"required": True, "content": {JSON: {"schema": _envelope(
                    member, _body(resource.spec, create=False))}}},
                "responses": _responses({200: _ok(f"The updated {member}", one)},
                                        404, 409, *constrained)},
        "delete": {"operationId": f"delete_{member}", "parameters": if_match,
                   "responses": _responses({204: _ok("Deleted")}, 404, 409, *constrained)},
    }
    if resource.creatable:
        post_body = _body(resource.spec, create=True)
        bulk = {"type": "array", "minItems": 1, "items": post_body}
        base["post"] = {
            "operationId": f"create_{member}",
            "requestBody": {"required": True, "content": {JSON: {"schema": {"oneOf": [
                _envelope(member, post_body), _envelope(collection, bulk)]}}}},
            "responses": _responses({201: _ok("Created (bulk: all or nothing)", {"oneOf": [
                one, _envelope(collection, {"type": "array", "items": _ref(resource)})]})},
                404, 409, 503)}
    path = f"/v2.0/{resource.collection}"
    return {path: base, f"{path}/{{item_id}}": item}


def _tag_paths(collection: str) -> dict[str, Any]:
    tag = {"type": "string", "minLength": 1, "maxLength": MAX_TAG_LEN}
    tags = _envelope("tags", {"type": "array", "items": tag})
    tag_param = {"name": "tag", "in": "path", "required": True, "schema": {"type": "string"}}
    base = f"/v2.0/{collection}/{{item_id}}/tags"
    return {
        base: {
            "parameters": [ID_PARAM],
            "get": {"operationId": f"list_{collection}_tags",
                    "responses": _responses({200: _ok("The tags", tags)}, 404)},
            "put": {"operationId": f"replace_{collection}_tags",
                    "requestBody": {"required": True, "content": {JSON: {"schema": tags}}},
                    "responses": _responses({200: _ok("The new tags", tags)}, 404)},
            "delete": {"operationId": f"clear_{collection}_tags",
                       "responses": _responses({204: _ok("Removed all tags")}, 404)}},
        base + "/{tag}": {
            "parameters": [ID_PARAM, tag_param],
            "get": {"operationId": f"check_{collection}_tag",
                    "responses": _responses({204: _ok("Tag present")}, 404)},
            "put": {"operationId": f"add_{collection}_tag",
                    "responses": _responses({201: _ok("Tag added")}, 404)},
            "delete": {"operationId": f"remove_{collection}_tag",
                       "responses": _responses({204: _ok("Tag removed")}, 404)}},
    }


def _meta_paths() -> dict[str, Any]:
    self_links = {"type": "array", "items": {"type": "object", "properties": {
        "href": {"type": "string"}, "rel": {"type": "string"}}}}
    extension = {"type": "object", "required": ["alias", "name", "description"],
                 "properties": {"alias": {"type": "string"}, "name": {"type": "string"},
                                "description": {"type": "string"},
                                "updated": {"type": "string"}, "links": {"type": "array"}}}
    versions = _envelope("versions", {"type": "array", "items": {"type": "object", "properties": {
        "id": {"type": "string"}, "status": {"type": "string"}, "links": self_links}}})
    resources = _envelope("resources", {"type": "array", "items": {
        "type": "object", "properties": {"name": {"type": "string"},
                                         "collection": {"type": "string"},
                                         "links": self_links}}})
    listing = {"get": {"operationId": "list_resources",
                       "responses": {"200": _ok("The collections", resources)}}}
    return {
        "/": {"get": {"operationId": "list_versions",
                      "responses": {"200": _ok("API versions", versions)}}},
        "/v2.0": listing,
        "/v2.0/": {"get": dict(listing["get"], operationId="list_resources_slash")},
        "/v2.0/extensions": {"get": {
            "operationId": "list_extensions",
            "responses": {"200": _ok("Implemented extensions", _envelope(
                "extensions", {"type": "array", "items": extension}))}}},
        "/v2.0/extensions/{alias}": {
            "parameters": [{"name": "alias", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "get": {"operationId": "show_extension",
                    "responses": _responses({200: _ok("The extension",
                                                      _envelope("extension", extension))},
                                            404)}},
    }


def _get(operation: str, description: str, schema: Schema, *errors: int) -> dict[str, Any]:
    return {"operationId": operation,
            "responses": _responses({200: _ok(description, schema)}, *errors)}


def _path_param(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def _extension_paths() -> dict[str, Any]:
    """Quotas, network IP availability, service providers, dhcp_agent_scheduler."""
    project = {"project_id": {"type": "string"}, "tenant_id": {"type": "string"}}
    per_resource = {r: {"type": "integer"} for r in QUOTA_RESOURCES}
    limits = {"type": "object", "properties": per_resource}
    listed = {"type": "object", "properties": {**per_resource, **project}}
    detail = {"type": "object", "properties": {k: {"type": "integer"} for k in
                                               ("limit", "used", "reserved")}}
    details = {"type": "object", "properties": {r: detail for r in QUOTA_RESOURCES}}
    change = {"type": "object", "properties": {"quota": {"type": "object", "properties": {
        **{r: {"type": "integer", "minimum": -1, "maximum": INT_RANGE[1]}
           for r in QUOTA_RESOURCES}, "check_limit": {"type": "boolean"}}}}}
    quota = _envelope("quota", limits)
    availability = _rendered(attributes.IP_AVAILABILITY)
    providers = {"type": "array", "items": {"type": "object", "properties": {
        k: {"type": "string"} for k in ("service_type", "name", "default")}}}
    show_details: dict[str, Any] = {"parameters": _path_param("project_id"),
                    "get": _get("show_quota_details", "Limits and usage",
                                _envelope("quota", details), 404)}
    return {
        "/v2.0/quotas": {"get": _get("list_quotas", "Projects with their own limits",
                                     _envelope("quotas", {"type": "array", "items": listed}))},
        "/v2.0/quotas/tenant": {"get": _get("show_own_project", "The calling project",
                                            _envelope("tenant", {"type": "object"}))},
        "/v2.0/quotas/project": {"get": _get("show_own_project_2", "The calling project",
                                             _envelope("tenant", {"type": "object"}))},
        "/v2.0/quotas/{project_id}": {
            "parameters": _path_param("project_id"),
            "get": _get("show_quota", "The project's limits", quota, 404),
            "put": {"operationId": "update_quota",
                    "requestBody": {"required": True, "content": {JSON: {"schema": change}}},
                    "responses": _responses({200: _ok("The new limits", quota)}, 404, 409)},
            "delete": {"operationId": "reset_quota",
                       "responses": _responses({204: _ok("Back to the defaults")}, 404)}},
        "/v2.0/quotas/{project_id}/default": {
            "parameters": _path_param("project_id"),
            "get": _get("show_default_quota", "The default limits", quota, 404)},
        "/v2.0/quotas/{project_id}/details": show_details,
        "/v2.0/quotas/{project_id}/details.json": {
            "parameters": show_details["parameters"],
            "get": {**show_details["get"], "operationId": "show_quota_details_json"}},
        "/v2.0/network-ip-availabilities": {"get": _get(
            "list_network_ip_availabilities", "Addresses per network",
            _envelope("network_ip_availabilities", {"type": "array", "items": availability}))},
        "/v2.0/network-ip-availabilities/{network_id}": {
            "parameters": _path_param("network_id"),
            "get": _get("show_network_ip_availability", "Addresses of one network",
                        _envelope("network_ip_availability", availability), 404)},
        "/v2.0/service-providers": {"get": _get(
            "list_service_providers", "Service providers (none)",
            _envelope("service_providers", providers))},
        "/v2.0/networks/{network_id}/dhcp-agents": {
            "parameters": _path_param("network_id"),
            "get": _get("list_dhcp_agents_of_network", "DHCP agents hosting it (none)",
                        _envelope("agents", {"type": "array"}), 404)},
        "/v2.0/agents/{agent_id}/dhcp-networks": {
            "parameters": _path_param("agent_id"),
            "get": _get("list_networks_of_dhcp_agent", "Networks it hosts (none)",
                        _envelope("networks", {"type": "array"}), 404)},
    }


def describe() -> dict[str, Any]:
    """The paths and component schemas of the Neutron API vifwire implements."""
    paths = {**_meta_paths(), **_extension_paths()}
    for resource in RESOURCES:
        paths.update(_resource_paths(resource))
    for collection in TAGGABLE:
        paths.update(_tag_paths(collection))
    schemas = {"NeutronError": ERROR_SCHEMA}
    schemas.update({r.member: _rendered(r.spec) for r in RESOURCES})
    return {"paths": paths, "components": {"schemas": schemas}}


def build(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title="vifwire", version=app.version, openapi_version="3.1.0",
                      description="Neutron v2.0 networking API (networks, subnets, ports, "
                                  "agents, tags), as implemented by vifwire.",
                      routes=app.routes)
    ours = describe()
    doc["paths"] = {**doc.get("paths", {}), **ours["paths"]}
    doc["components"] = {"schemas": {**doc.get("components", {}).get("schemas", {}),
                                     **ours["components"]["schemas"]}}
    return doc


def install(app: FastAPI) -> None:
    """Serve `build(app)` at the app's openapi_url, computed once on first use."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if "doc" not in cache:
            cache["doc"] = build(app)
        return cache["doc"]

    app.openapi = openapi  # type: ignore[method-assign]
