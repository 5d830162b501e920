"""Attribute maps: which attributes a resource accepts on POST/PUT, and how to check them.

Like neutron-lib's RESOURCE_ATTRIBUTE_MAP, reduced to what vifwire implements.
A converter takes the raw JSON value and returns the clean one or raises
ValueError with a reason; `validate_body` turns that into Neutron's 400.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vifwire.server import faults

Converter = Callable[[Any], Any]
_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")
VNIC_TYPES = {"normal", "direct", "macvtap", "baremetal", "direct-physical",
              "virtio-forwarder", "smart-nic", "vdpa", "remote-managed"}
LIST_PARAMS = {"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"}


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"'{value}' is not a valid string")
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
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"'{value}' is not an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{value}' is not an integer") from None


def string_or_none(value: Any) -> str | None:
    return None if value is None else string(value)


def ip_or_none(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(string(value)))
    except ValueError:
        raise ValueError(f"'{value}' is not a valid IP address") from None


def ip_version(value: Any) -> int:
    number = integer_or_none(value)
    if number not in (4, 6):
        raise ValueError(f"'{value}' is not in [4, 6]")
    return number


def mac(value: Any) -> str:
    if not isinstance(value, str) or not _MAC.match(value):
        raise ValueError(f"'{value}' is not a valid MAC address")
    return value.lower()


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
        return {k: string(v) if isinstance(v, str) else v for k, v in value.items()}
    return convert


def fixed_ip(value: Any) -> dict[str, Any]:
    entry = keys(set(), {"subnet_id", "ip_address"})(value)
    if "subnet_id" in entry:
        entry["subnet_id"] = uuid_str(entry["subnet_id"])
    if "ip_address" in entry:
        entry["ip_address"] = ip_or_none(entry["ip_address"])
    if not entry:
        raise ValueError("Exactly one of subnet_id or ip_address is required")
    return entry


def vnic_type(value: Any) -> str:
    if value not in VNIC_TYPES:
        raise ValueError(f"'{value}' is not in {sorted(VNIC_TYPES)}")
    return str(value)


def fixed_ips_or_none(value: Any) -> list[dict[str, Any]] | None:
    return None if value is None else list_of(fixed_ip)(value)


@dataclass(frozen=True)
class Attr:
    convert: Converter = string
    post: bool = True
    put: bool = True
    required: bool = False


READ_ONLY = Attr(post=False, put=False)
POST_ONLY = Attr(put=False)

_COMMON: dict[str, Attr] = {
    "id": READ_ONLY,
    "name": Attr(),
    "description": Attr(),
    "tenant_id": Attr(put=False),
    "project_id": Attr(put=False),
    "tags": READ_ONLY,
    "created_at": READ_ONLY,
    "updated_at": READ_ONLY,
    "revision_number": READ_ONLY,
}

NETWORK: dict[str, Attr] = {
    **_COMMON,
    "admin_state_up": Attr(boolean),
    "shared": Attr(boolean),
    "status": READ_ONLY,
    "subnets": READ_ONLY,
    "mtu": READ_ONLY,
    "port_security_enabled": Attr(boolean),
    "provider:network_type": Attr(string_or_none, put=False),
    "provider:physical_network": Attr(string_or_none, put=False),
    "provider:segmentation_id": Attr(integer_or_none, put=False),
    "availability_zone_hints": Attr(list_of(string), put=False),
    "availability_zones": READ_ONLY,
    "ipv4_address_scope": READ_ONLY,
    "ipv6_address_scope": READ_ONLY,
}

SUBNET: dict[str, Attr] = {
    **_COMMON,
    "network_id": Attr(uuid_str, put=False, required=True),
    "ip_version": Attr(ip_version, put=False, required=True),
    "cidr": Attr(string, put=False, required=True),
    "gateway_ip": Attr(ip_or_none),
    "allocation_pools": Attr(list_of(keys({"start", "end"}))),
    "dns_nameservers": Attr(list_of(string)),
    "host_routes": Attr(list_of(keys({"destination", "nexthop"}))),
    "enable_dhcp": Attr(boolean),
    "ipv6_ra_mode": Attr(string_or_none, put=False),
    "ipv6_address_mode": Attr(string_or_none, put=False),
    "subnetpool_id": READ_ONLY,
    "service_types": READ_ONLY,
    "segment_id": READ_ONLY,
}

PORT: dict[str, Attr] = {
    **_COMMON,
    "network_id": Attr(uuid_str, put=False, required=True),
    "mac_address": Attr(mac),
    "admin_state_up": Attr(boolean),
    "status": READ_ONLY,
    "device_id": Attr(string),
    "device_owner": Attr(string),
    "fixed_ips": Attr(fixed_ips_or_none),
    "security_groups": Attr(list_of(uuid_str)),
    "allowed_address_pairs": Attr(list_of(keys({"ip_address"}, {"mac_address"}))),
    "port_security_enabled": Attr(boolean),
    "binding:host_id": Attr(string_or_none),
    "binding:vif_type": READ_ONLY,
    "binding:vif_details": READ_ONLY,
    "binding:vnic_type": Attr(vnic_type),
    "binding:profile": Attr(dict_or_none),
}

AGENT: dict[str, Attr] = {
    "admin_state_up": Attr(boolean, post=False),
    "description": Attr(post=False),
    **{name: READ_ONLY for name in (
        "id", "agent_type", "binary", "host", "topic", "alive", "availability_zone",
        "configurations", "created_at", "started_at", "heartbeat_timestamp",
        "resources_synced")},
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


def parse_filters(spec: Mapping[str, Attr],
                  params: list[tuple[str, str]]) -> tuple[dict[str, list[Any]], list[str]]:
    """Query string -> (filters, fields). Repeated keys OR together."""
    filters: dict[str, list[Any]] = {}
    fields: list[str] = []
    for key, value in params:
        if key == "fields":
            fields.extend(f for f in value.split(",") if f)
            continue
        if key in LIST_PARAMS:
            continue
        attr = spec.get(key)
        if attr is not None and attr.convert in (boolean, integer_or_none, ip_version):
            try:
                converted: Any = attr.convert(value)
            except ValueError as exc:
                raise _bad(key, str(exc)) from None
        else:
            converted = value
        filters.setdefault(key, []).append(converted)
    return filters, fields
