"""Attribute maps: which attributes a resource accepts on POST/PUT, and how to check them.

Like neutron-lib's RESOURCE_ATTRIBUTE_MAP, reduced to what vifwire implements.
A converter takes the raw JSON value and returns the clean one or raises
ValueError with a reason; `validate_body` turns that into Neutron's 400.

Each attribute also carries the JSON schema of the value the API renders, so
one table drives validation, list filters and sort keys (`listing`), and the
OpenAPI description (`openapi`): they cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vifwire.server import faults

Converter = Callable[[Any], Any]
# `$` would also match before a trailing newline: the whole string must match.
_MAC = re.compile(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}")
_INTEGER = re.compile(r"[+-]?[0-9]+")
INVALID_MACS = {"00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"}  # neutron-lib's INVALID_MAC_ADDRESSES
IPV6_MODES = ("dhcpv6-stateful", "dhcpv6-stateless", "slaac")
# Neutron's defaults for max_allowed_address_pair, max_dns_nameservers,
# max_subnet_host_routes.
MAX_ADDRESS_PAIRS = 10
VNIC_TYPES = {"normal", "direct", "macvtap", "baremetal", "direct-physical",
              "virtio-forwarder", "smart-nic", "vdpa", "remote-managed"}
Schema = Mapping[str, Any]


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"'{value}' is not a valid string")
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed in strings")
    if len(value) > 255:
        raise ValueError(f"'{value[:32]}...' exceeds maximum length of 255")
    return value


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ValueError(f"'{value}' cannot be converted to boolean")


def uuid_str(value: Any) -> str:
    try:
        if not isinstance(value, str):
            raise ValueError
        uuid.UUID(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a valid UUID") from None
    return value


def integer_or_none(value: Any) -> int | None:
    """An integer, never a silent truncation: 1.5 and "1.5" are refused, 2.0 is 2.

    Like neutron-lib's validate_integer (float(x) == int(x), no booleans), but a
    JSON string is not an integer here: the OpenAPI document says integer.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"'{value}' is not an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"'{value}' is not an integer")
        return int(value)
    return value


def integer_text(value: str) -> int:
    """An integer from a query string: digits only (no "1.5", "1_000" or " 7")."""
    if not _INTEGER.fullmatch(value):
        raise ValueError(f"'{value}' is not an integer")
    return int(value)


def string_or_none(value: Any) -> str | None:
    return None if value is None else string(value)


def ip_address(value: Any) -> str:
    """A canonical IP address (`2001:DB8::0011` -> `2001:db8::11`).

    A zone suffix (`fe80::1%eth0`) is refused: Neutron's netaddr does not parse
    one, and kept it would make one address look like many.
    """
    text = string(value)
    try:
        if "%" in text:
            raise ValueError
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"'{value}' is not a valid IP address") from None


def ip_or_none(value: Any) -> str | None:
    return None if value is None else ip_address(value)


def cidr(value: Any) -> str:
    """A CIDR's syntax (prefix required, no zone); `ipam` checks host bits and size."""
    text = string(value)
    try:
        if "/" not in text or "%" in text:
            raise ValueError
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"'{value}' is not a valid IP subnet") from None
    return text


def ip_version(value: Any) -> int:
    number = integer_or_none(value)
    if number not in (4, 6):
        raise ValueError(f"'{value}' is not in [4, 6]")
    return number


def mac(value: Any) -> str:
    """A unicast MAC, lower case; not all-zero, broadcast or multicast."""
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        raise ValueError(f"'{value}' is not a valid MAC address")
    clean = value.lower()
    if clean in INVALID_MACS:
        raise ValueError(f"'{value}' is not a valid MAC address")
    if int(clean[:2], 16) & 1:
        raise ValueError(f"MAC address {value} is a multicast address, which is not "
                         "supported")
    return clean


def dict_or_none(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"'{value}' is not a dictionary")
    return value


def list_of(item: Converter) -> Converter:
    def convert(value: Any) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError(f"'{value}' is not a list")
        return [item(v) for v in value]
    return convert


def keys(required: set[str], optional: set[str] = frozenset()) -> Converter:  # type: ignore[assignment]
    def convert(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError(f"'{value}' is not a dictionary")
        missing, extra = required - value.keys(), value.keys() - required - optional
        if missing or extra:
            raise ValueError(f"Invalid data format for {value}: expected keys "
                             f"{sorted(required | optional)}")
        return {k: string(v) for k, v in value.items()}
    return convert


def fixed_ip(value: Any) -> dict[str, Any]:
    entry = keys(set(), {"subnet_id", "ip_address"})(value)
    if "subnet_id" in entry:
        entry["subnet_id"] = uuid_str(entry["subnet_id"])
    if "ip_address" in entry:
        entry["ip_address"] = ip_address(entry["ip_address"])
    if not entry:
        raise ValueError("Exactly one of subnet_id or ip_address is required")
    return entry


def fixed_ips_or_none(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    entries = list_of(fixed_ip)(value)
    seen: set[str] = set()
    for entry in entries:  # neutron-lib's validate_fixed_ips: no address twice
        address = entry.get("ip_address")
        if address in seen:
            raise ValueError(f"Duplicate IP address '{address}'")
        if address is not None:
            seen.add(address)
    return entries


def _unique(kind: str, items: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if item in seen:
            raise ValueError(f"Duplicate {kind} '{item}'")
        seen.append(item)
    return items


def nameservers(value: Any) -> list[str]:
    """neutron-lib's validate_nameservers: unique IP addresses."""
    found = []
    for host in list_of(lambda v: v)(value):
        try:
            found.append(ip_address(host))
        except ValueError as exc:
            raise ValueError(f"'{host}' is not a valid nameserver. {exc}") from None
    return _unique("nameserver", found)


def route_cidr(value: Any) -> str:
    """neutron-lib's validate_route_cidr: a network address with its prefix, routable."""
    text = cidr(value)
    network = ipaddress.ip_network(text, strict=False)
    if network.network_address != ipaddress.ip_interface(text).ip:
        raise ValueError(f"'{value}' is not a valid CIDR")
    if network.is_loopback:
        raise ValueError(f"'{value}' is not a routable CIDR")
    return str(network)


def host_routes(value: Any) -> list[dict[str, str]]:
    """neutron-lib's validate_hostroutes: destination CIDR and nexthop IP, unique."""
    routes = [{"destination": route_cidr(r["destination"]), "nexthop": ip_address(r["nexthop"])}
              for r in list_of(keys({"destination", "nexthop"}))(value)]
    return _unique("hostroute", routes)


def address_pair(value: Any) -> dict[str, str]:
    """One allowed address pair, as neutron-lib validates it (the service fills a
    missing mac_address with the port's)."""
    if not isinstance(value, dict):
        raise ValueError(f"'{value}' is not a dictionary")
    if "ip_address" not in value:
        raise ValueError("AllowedAddressPair must contain ip_address")
    unknown = value.keys() - {"ip_address", "mac_address"}
    if unknown:
        raise ValueError(f"Unrecognized attribute(s) '{', '.join(sorted(unknown))}'")
    raw = string(value["ip_address"])
    if "/" in raw:  # a CIDR: kept as written (host bits too), in canonical form
        network = ipaddress.ip_network(cidr(raw), strict=False)
        if network.is_multicast:
            raise ValueError(f"Subnet {raw} overlaps with multicast range, which is not "
                             "supported")
        pair = {"ip_address": str(ipaddress.ip_interface(raw))}
    else:
        address = ip_address(raw)
        if ipaddress.ip_address(address).is_multicast:
            raise ValueError(f"IP {raw} is a multicast address, which is not supported")
        pair = {"ip_address": address}
    if "mac_address" in value:
        pair["mac_address"] = mac(value["mac_address"])
    return pair


def address_pairs(value: Any) -> list[dict[str, str]]:
    pairs = list_of(address_pair)(value)
    if len(pairs) > MAX_ADDRESS_PAIRS:
        raise ValueError(f"The number of allowed address pair exceeds the maximum "
                         f"{MAX_ADDRESS_PAIRS}")
    seen: set[tuple[str | None, str]] = set()
    for pair in pairs:
        key = (pair.get("mac_address"), pair["ip_address"])
        if key in seen:
            raise ValueError(f"Request contains duplicate address pair: mac_address "
                             f"{key[0]} ip_address {key[1]}")
        seen.add(key)
    return pairs


def pools(value: Any) -> list[dict[str, str]]:
    """neutron-lib's validate_ip_pools: start and end, each an IP address."""
    return [{"start": ip_address(p["start"]), "end": ip_address(p["end"])}
            for p in list_of(keys({"start", "end"}))(value)]


def ipv6_mode(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or value not in IPV6_MODES):
        raise ValueError(f"{value} is not in {list(IPV6_MODES)}")
    return value


def vnic_type(value: Any) -> str:
    if not isinstance(value, str) or value not in VNIC_TYPES:  # a list is unhashable
        raise ValueError(f"'{value}' is not in {sorted(VNIC_TYPES)}")
    return str(value)


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
    "mtu": read_only(INT),
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
    "cidr": Attr(cidr, put=False, required=True),
    "gateway_ip": Attr(ip_or_none, schema=STR_OR_NULL),
    "allocation_pools": Attr(pools, schema=_pairs("start", "end")),
    "dns_nameservers": Attr(nameservers, schema=STR_LIST),
    "host_routes": Attr(host_routes, schema=_pairs("destination", "nexthop")),
    "enable_dhcp": Attr(boolean, schema=BOOL),
    "ipv6_ra_mode": Attr(ipv6_mode, put=False, schema=IPV6_MODE),
    "ipv6_address_mode": Attr(ipv6_mode, put=False, schema=IPV6_MODE),
    "subnetpool_id": read_only(NULL),
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
    "security_groups": Attr(list_of(uuid_str), schema={"type": "array", "items": UUID}),
    "allowed_address_pairs": Attr(address_pairs, schema=_pairs(
        "ip_address", optional=("mac_address",))),
    "port_security_enabled": Attr(boolean, schema=BOOL),
    "binding:host_id": Attr(string_or_none, schema=STR),
    "binding:vif_type": read_only(STR),
    "binding:vif_details": read_only(OBJECT),
    "binding:vnic_type": Attr(vnic_type, schema={"enum": sorted(VNIC_TYPES)}),
    "binding:profile": Attr(dict_or_none, schema=OBJECT),
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
    mac: {"type": "string", "pattern": f"^{_MAC.pattern}$"},
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
