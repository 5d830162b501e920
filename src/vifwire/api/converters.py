"""Converters: a raw JSON value in, the clean value out, or ValueError with the reason.

The rules and messages are neutron-lib's validators and converters (and
Neutron's own checks where the library has none): canonical IP addresses
without zones, strict unicast MACs, integers never truncated, and the
list-of-dict attributes (fixed IPs, pools, host routes, address pairs) checked
entry by entry. `attributes` puts them in the resources' tables.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable
from typing import Any

Converter = Callable[[Any], Any]
# `$` would also match before a trailing newline: the whole string must match.
MAC_RE = re.compile(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}")
_INTEGER = re.compile(r"[+-]?[0-9]+")
INVALID_MACS = {"00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"}  # neutron-lib's INVALID_MAC_ADDRESSES
IPV6_MODES = ("dhcpv6-stateful", "dhcpv6-stateless", "slaac")
MAX_ADDRESS_PAIRS = 10  # Neutron's max_allowed_address_pair default
VNIC_TYPES = {"normal", "direct", "macvtap", "baremetal", "direct-physical",
              "virtio-forwarder", "smart-nic", "vdpa", "remote-managed"}


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


def uuid_list(value: Any) -> list[str]:
    """neutron-lib's uuid_list (None is []): UUIDs, none twice."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"'{value}' is not a list")
    items = [uuid_str(v) for v in value]
    twice = sorted({i for i in items if items.count(i) > 1})
    if twice:
        raise ValueError(f"Duplicate items in the list: '{', '.join(twice)}'")
    return items


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
    if not isinstance(value, str) or not MAC_RE.fullmatch(value):
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


def uuid_or_none(value: Any) -> str | None:
    return None if value is None else uuid_str(value)


DHCP_OPT_KEYS = {"opt_name", "opt_value", "ip_version"}


def extra_dhcp_opt(value: Any) -> dict[str, Any]:
    """One of a port's extra_dhcp_opts (neutron-lib's extra_dhcp_opt validators): a
    name, a value (None on update: remove the option) and IP version 4 or 6."""
    if not isinstance(value, dict):
        raise ValueError(f"'{value}' is not a dictionary")
    unknown = value.keys() - DHCP_OPT_KEYS
    if unknown or "opt_name" not in value:
        raise ValueError(f"Invalid data format for extra-dhcp-opt: {value}")
    name = string(value["opt_name"])
    if not name.strip():
        raise ValueError("'' is not a valid opt_name")
    opt_value = value.get("opt_value")
    opt_value = None if opt_value is None else string(opt_value)
    version = value.get("ip_version", 4)
    if isinstance(version, str) and version.strip().isdigit():
        version = int(version)
    return {"opt_name": name, "opt_value": opt_value, "ip_version": ip_version(version)}


def extra_dhcp_opts(value: Any) -> list[dict[str, Any]]:
    opts = list_of(extra_dhcp_opt)(value)
    seen: set[tuple[str, int]] = set()
    for opt in opts:
        key = (opt["opt_name"], opt["ip_version"])
        if key in seen:
            raise ValueError(f"Duplicate extra DHCP option {opt['opt_name']} for IPv"
                             f"{opt['ip_version']}")
        seen.add(key)
    return opts
