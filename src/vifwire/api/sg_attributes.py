"""Attribute maps of security groups and their rules, and the converters only they use.

Neutron's security-group and stateful-security-group extensions: the converters
raise Neutron's own faults (their type names reach the client) where Neutron's
`convert_to` functions do, and ValueError (the generic "Invalid input for ...")
where Neutron's validators return a message. The checks that span attributes
(port ranges against the protocol, a prefix against the ethertype, one remote
only) are the service's (`vifwire.server.sg_rules`), as in Neutron's db mixin.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from vifwire.api.attributes import (
    _COMMON,
    BOOL,
    INT_OR_NULL,
    STR,
    STR_OR_NULL,
    UUID,
    Attr,
    read_only,
)
from vifwire.api.converters import boolean, integer_or_none, string, string_or_none
from vifwire.server import sg_faults
from vifwire.server.sg_faults import ETHERTYPES, PROTOCOL_NUMBERS

DIRECTIONS = ("ingress", "egress")


def group_name(value: Any) -> str:
    """Neutron's name_not_default: any name but `default` (that one is the project's own)."""
    name = string(value)
    if name.lower() == "default":
        raise sg_faults.SecurityGroupDefaultAlreadyExists()
    return name


def protocol(value: Any) -> str | None:
    """A protocol by name (lower case) or by number 0-255 (as a string); None or `any`:
    every protocol."""
    if value is None or value == "any":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    elif isinstance(value, str) and value.lower() in PROTOCOL_NUMBERS:
        return value.lower()
    else:
        raise sg_faults.SecurityGroupRuleInvalidProtocol(value)
    if not 0 <= number <= 255:
        raise sg_faults.SecurityGroupRuleInvalidProtocol(value)
    return str(number)


def ethertype(value: Any) -> str:
    if isinstance(value, str):
        for known in ETHERTYPES:
            if known.lower() == value.lower():
                return known
    raise sg_faults.SecurityGroupRuleInvalidEtherType(value)


def port_value(value: Any) -> int | None:
    """A port number 0-65535 (neutron's convert_validate_port_value); the protocol
    decides later whether it is a port, an ICMP type or code, or refused."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        number: int | None = int(value)
    else:
        try:
            number = integer_or_none(value)
        except ValueError:
            number = None
    if number is None or not 0 <= number <= 65535:
        raise sg_faults.SecurityGroupInvalidPortValue(value)
    return number


def ip_prefix(value: Any) -> str | None:
    """A CIDR in canonical form with its prefix length (`10.0.0.5` -> `10.0.0.5/32`);
    host bits are kept, as Neutron keeps them (`normalized_cidr` drops them)."""
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str) or "%" in value:
            raise ValueError
        return str(ipaddress.ip_interface(value))
    except ValueError:
        raise sg_faults.InvalidCIDR(value) from None


def direction(value: Any) -> str:
    if not isinstance(value, str) or value not in DIRECTIONS:
        raise ValueError(f"'{value}' is not in {list(DIRECTIONS)}")
    return value


def _enum(values: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}  # "type" too: a sort key and filter


_RULE_SCHEMA = {"type": "object", "properties": {
    "id": UUID, "security_group_id": UUID, "direction": STR, "ethertype": STR,
    "protocol": STR_OR_NULL, "port_range_min": INT_OR_NULL, "port_range_max": INT_OR_NULL,
    "remote_ip_prefix": STR_OR_NULL, "remote_group_id": STR_OR_NULL}}

SECURITY_GROUP: dict[str, Attr] = {
    **_COMMON,
    "name": Attr(group_name),
    "stateful": Attr(boolean, schema=BOOL),
    "security_group_rules": read_only({"type": "array", "items": _RULE_SCHEMA}),
}

SECURITY_GROUP_RULE: dict[str, Attr] = {
    **{k: v for k, v in _COMMON.items() if k not in ("name", "tags")},
    "security_group_id": Attr(string, put=False, required=True, schema=UUID),
    "remote_group_id": Attr(string_or_none, put=False, schema=STR_OR_NULL),
    "direction": Attr(direction, put=False, required=True, schema=_enum(DIRECTIONS)),
    "ethertype": Attr(ethertype, put=False, schema=_enum(ETHERTYPES)),
    "protocol": Attr(protocol, put=False, schema=STR_OR_NULL),
    "port_range_min": Attr(port_value, put=False, schema=INT_OR_NULL),
    "port_range_max": Attr(port_value, put=False, schema=INT_OR_NULL),
    "remote_ip_prefix": Attr(ip_prefix, put=False, schema=STR_OR_NULL),
    "normalized_cidr": read_only(STR_OR_NULL),
}
