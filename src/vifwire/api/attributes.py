"""Attribute maps: which attributes a resource accepts on POST/PUT, and how to check them.

Like neutron-lib's RESOURCE_ATTRIBUTE_MAP, reduced to what vifwire implements.
A converter (`converters`) takes the raw JSON value and returns the clean one or raises
ValueError with a reason; `validate_body` turns that into Neutron's 400.

Each attribute also carries the JSON schema of the value the API renders, so
one table drives validation, list filters and sort keys (`listing`), and the
OpenAPI description (`openapi`): they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vifwire.api.converters import (
    IPV6_MODES,
    MAC_RE,
    VNIC_TYPES,
    Converter,
    address_pairs,
    boolean,
    cidr,
    dict_or_none,
    extra_dhcp_opts,
    fixed_ips_or_none,
    host_routes,
    integer_or_none,
    ip_or_none,
    ip_version,
    ipv6_mode,
    list_of,
    mac,
    nameservers,
    pools,
    string,
    string_or_none,
    uuid_list,
    uuid_or_none,
    uuid_str,
    vnic_type,
)
from vifwire.server import faults

Schema = Mapping[str, Any]


# JSON schemas of rendered values.
STR: Schema = {"type": "string"}
STR_OR_NULL: Schema = {"type": ["string", "null"]}
INT: Schema = {"type": "integer"}
INT_OR_NULL: Schema = {"type": ["integer", "null"]}
BOOL: Schema = {"type": "boolean"}
NULL: Schema = {"type": "null"}
OBJECT: Schema = {"type": "object"}
UUID: Schema = {"type": "string", "format": "uuid"}
STR_LIST: Schema = {"type": "array", "items": STR}
IPV6_MODE: Schema = {"enum": [*IPV6_MODES, None]}


def _pairs(*names: str, optional: tuple[str, ...] = ()) -> Schema:
    return {"type": "array", "items": {"type": "object", "required": list(names),
                                       "properties": {n: STR for n in (*names, *optional)}}}


SCALAR_TYPES = {"string", "integer", "boolean"}


@dataclass(frozen=True)
class Attr:
    convert: Converter = string
    post: bool = True
    put: bool = True
    required: bool = False
    schema: Schema = field(default_factory=lambda: STR)

    @property
    def types(self) -> set[str]:
        kind = self.schema.get("type", "object")
        return {kind} if isinstance(kind, str) else set(kind)

    @property
    def sortable(self) -> bool:
        return bool(self.types & SCALAR_TYPES) and self.types <= SCALAR_TYPES | {"null"}


def read_only(schema: Schema) -> Attr:
    return Attr(post=False, put=False, schema=schema)


_COMMON: dict[str, Attr] = {
    "id": read_only(UUID),
    "name": Attr(),
    "description": Attr(),
    "tenant_id": Attr(put=False),
    "project_id": Attr(put=False),
    "tags": read_only(STR_LIST),
    "created_at": read_only(STR),
    "updated_at": read_only(STR),
    "revision_number": read_only(INT),
}

NETWORK: dict[str, Attr] = {
    **_COMMON,
    "admin_state_up": Attr(boolean, schema=BOOL),
    "shared": Attr(boolean, schema=BOOL),
    "status": read_only(STR),
    "subnets": read_only({"type": "array", "items": UUID}),
    # net-mtu-writable: at most the segment's MTU (the service checks).
    "mtu": Attr(integer_or_none, schema=INT),
    # external-net; who may set it is policy (admin only, on Neutron).
    "router:external": Attr(boolean, schema=BOOL),
    "port_security_enabled": Attr(boolean, schema=BOOL),
    "provider:network_type": Attr(string_or_none, put=False, schema=STR),
    "provider:physical_network": Attr(string_or_none, put=False, schema=STR_OR_NULL),
    "provider:segmentation_id": Attr(integer_or_none, put=False, schema=INT_OR_NULL),
    "availability_zone_hints": Attr(list_of(string), put=False, schema=STR_LIST),
    "availability_zones": read_only(STR_LIST),
    "ipv4_address_scope": read_only(NULL),
    "ipv6_address_scope": read_only(NULL),
}

SUBNET: dict[str, Attr] = {
    **_COMMON,
    "network_id": Attr(uuid_str, put=False, required=True, schema=UUID),
    "ip_version": Attr(ip_version, put=False, required=True, schema={"enum": [4, 6]}),
    # Required unless the subnet is carved from a pool (the service checks).
    "cidr": Attr(cidr, put=False),
    "prefixlen": Attr(integer_or_none, put=False, schema=INT_OR_NULL),
    "use_default_subnetpool": Attr(boolean, put=False, schema=BOOL),
    "gateway_ip": Attr(ip_or_none, schema=STR_OR_NULL),
    "allocation_pools": Attr(pools, schema=_pairs("start", "end")),
    "dns_nameservers": Attr(nameservers, schema=STR_LIST),
    "host_routes": Attr(host_routes, schema=_pairs("destination", "nexthop")),
    "enable_dhcp": Attr(boolean, schema=BOOL),
    "ipv6_ra_mode": Attr(ipv6_mode, put=False, schema=IPV6_MODE),
    "ipv6_address_mode": Attr(ipv6_mode, put=False, schema=IPV6_MODE),
    "subnetpool_id": Attr(uuid_or_none, put=False, schema={"type": ["string", "null"],
                                                            "format": "uuid"}),
    "service_types": read_only(STR_LIST),
    "segment_id": read_only(NULL),
}

PORT: dict[str, Attr] = {
    **_COMMON,
    "network_id": Attr(uuid_str, put=False, required=True, schema=UUID),
    "mac_address": Attr(mac),
    "admin_state_up": Attr(boolean, schema=BOOL),
    "status": read_only(STR),
    "device_id": Attr(string),
    "device_owner": Attr(string),
    "fixed_ips": Attr(fixed_ips_or_none, schema=_pairs("subnet_id", "ip_address")),
    "security_groups": Attr(uuid_list, schema={"type": "array", "items": UUID}),
    "allowed_address_pairs": Attr(address_pairs, schema=_pairs(
        "ip_address", optional=("mac_address",))),
    "port_security_enabled": Attr(boolean, schema=BOOL),
    "binding:host_id": Attr(string_or_none, schema=STR),
    "binding:vif_type": read_only(STR),
    "binding:vif_details": read_only(OBJECT),
    "binding:vnic_type": Attr(vnic_type, schema={"enum": sorted(VNIC_TYPES)}),
    "binding:profile": Attr(dict_or_none, schema=OBJECT),
    "extra_dhcp_opts": Attr(extra_dhcp_opts, schema={"type": "array", "items": {
        "type": "object", "properties": {"opt_name": STR, "opt_value": STR_OR_NULL,
                                         "ip_version": {"enum": [4, 6]}}}}),
}

SUBNETPOOL: dict[str, Attr] = {
    **_COMMON,
    "prefixes": Attr(list_of(cidr), schema=STR_LIST),
    "ip_version": read_only({"enum": [4, 6]}),
    "default_prefixlen": Attr(integer_or_none, schema=INT),
    "min_prefixlen": Attr(integer_or_none, schema=INT),
    "max_prefixlen": Attr(integer_or_none, schema=INT),
    "shared": Attr(boolean, put=False, schema=BOOL),
    "is_default": Attr(boolean, schema=BOOL),
    "default_quota": Attr(integer_or_none, schema=INT_OR_NULL),
    "address_scope_id": Attr(uuid_or_none, schema=STR_OR_NULL),
}

_AVAILABILITY_SUBNET = {"type": "object", "properties": {
    "subnet_id": UUID, "subnet_name": STR, "cidr": STR, "ip_version": INT,
    "total_ips": INT, "used_ips": INT}}

# network-ip-availability: computed, read-only.
IP_AVAILABILITY: dict[str, Attr] = {
    "network_id": read_only(UUID),
    "network_name": read_only(STR),
    "tenant_id": read_only(STR),
    "project_id": read_only(STR),
    "ip_version": read_only({"enum": [4, 6]}),
    "total_ips": read_only(INT),
    "used_ips": read_only(INT),
    "subnet_ip_availability": read_only({"type": "array", "items": _AVAILABILITY_SUBNET}),
}

AGENT: dict[str, Attr] = {
    "admin_state_up": Attr(boolean, post=False, schema=BOOL),
    "description": Attr(post=False),
    **{name: read_only(STR) for name in (
        "agent_type", "binary", "host", "topic", "created_at", "started_at",
        "heartbeat_timestamp")},
    "id": read_only(UUID),
    "alive": read_only(BOOL),
    "availability_zone": read_only(NULL),
    "configurations": read_only(OBJECT),
    "resources_synced": read_only(NULL),
}

# What a client may send for each attribute (None: anything the converter takes).
INPUT_SCHEMAS: dict[Converter, Schema] = {
    string: {"type": "string", "maxLength": 255},
    boolean: BOOL,
    uuid_str: UUID,
    integer_or_none: INT_OR_NULL,
    string_or_none: {"type": ["string", "null"], "maxLength": 255},
    ip_or_none: {"type": ["string", "null"]},
    cidr: {"type": "string"},
    ipv6_mode: IPV6_MODE,
    ip_version: {"enum": [4, 6]},
    mac: {"type": "string", "pattern": f"^{MAC_RE.pattern}$"},
    dict_or_none: {"type": ["object", "null"]},
    vnic_type: {"enum": sorted(VNIC_TYPES)},
}


def _bad(attribute: str, reason: str) -> faults.BadRequest:
    return faults.BadRequest(f"Invalid input for {attribute}. Reason: {reason}.")


def validate_body(spec: Mapping[str, Attr], body: Any, create: bool,
                  project_id: str) -> dict[str, Any]:
    """The clean attributes of one resource body, or a Neutron 400."""
    if not isinstance(body, dict):
        raise faults.BadRequest("Resource body required")
    unknown = sorted(k for k in body if k not in spec)
    if unknown:
        raise faults.BadRequest("Unrecognized attribute(s) '" + ", ".join(unknown) + "'")
    clean: dict[str, Any] = {}
    for name, value in body.items():
        attr = spec[name]
        if create and not attr.post:
            raise faults.BadRequest(f"Attribute '{name}' not allowed in POST")
        if not create and not attr.put:
            raise faults.BadRequest(f"Cannot update read-only attribute {name}")
        try:
            clean[name] = attr.convert(value)
        except ValueError as exc:
            raise _bad(name, str(exc)) from None
    if create:
        missing = [n for n, a in spec.items() if a.required and n not in clean]
        if missing:
            raise faults.BadRequest("Failed to parse request. Required attribute "
                                    f"'{missing[0]}' not specified")
        tenant, project = clean.pop("tenant_id", None), clean.pop("project_id", None)
        if tenant and project and tenant != project:
            raise faults.BadRequest("'project_id' and 'tenant_id' do not match")
        clean["project_id"] = project or tenant or project_id
    return clean
