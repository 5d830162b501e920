"""The faults of security groups, rules and port security, with Neutron's types and
messages (neutron/extensions/securitygroup.py, neutron_lib.exceptions.port_security).

Apart from `faults` so the API's converters can raise them without importing any
service module (and through one, the database).
"""

from __future__ import annotations

from vifwire.server.faults import BadRequest, Conflict, NotFound

ETHERTYPES = ("IPv4", "IPv6")
# Neutron's sg_supported_protocols, in its order (None and "any": no protocol).
PROTOCOL_NUMBERS: dict[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1,
    "igmp": 2, "ip": 0, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58,
    "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89,
    "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}
SUPPORTED_PROTOCOLS = (None, "any", *PROTOCOL_NUMBERS)


class SecurityGroupNotFound(NotFound):
    type = "SecurityGroupNotFound"

    def __init__(self, group_id: str) -> None:
        super().__init__(f"Security group {group_id} does not exist")


class SecurityGroupRuleNotFound(NotFound):
    type = "SecurityGroupRuleNotFound"

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"Security group rule {rule_id} does not exist")


class SecurityGroupInUse(Conflict):
    type = "SecurityGroupInUse"

    def __init__(self, group_id: str) -> None:
        super().__init__(f"Security Group {group_id} in use.")


class SecurityGroupCannotRemoveDefault(Conflict):
    type = "SecurityGroupCannotRemoveDefault"

    def __init__(self) -> None:
        super().__init__("Insufficient rights for removing default security group.")


class SecurityGroupCannotUpdateDefault(Conflict):
    type = "SecurityGroupCannotUpdateDefault"

    def __init__(self) -> None:
        super().__init__("Updating default security group not allowed.")


class SecurityGroupDefaultAlreadyExists(Conflict):
    type = "SecurityGroupDefaultAlreadyExists"

    def __init__(self) -> None:
        super().__init__("Default security group already exists.")


class SecurityGroupConflict(Conflict):
    type = "SecurityGroupConflict"

    def __init__(self, reason: str) -> None:
        super().__init__(f"Error {reason} while attempting the operation.")


class SecurityGroupRuleExists(Conflict):
    type = "SecurityGroupRuleExists"

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"Security group rule already exists. Rule id is {rule_id}.")


class DuplicateSecurityGroupRuleInPost(Conflict):
    type = "DuplicateSecurityGroupRuleInPost"

    def __init__(self) -> None:
        super().__init__("Duplicate Security Group Rule in POST.")


class _Invalid(BadRequest):
    """neutron_lib's InvalidInput subclasses: a 400 named after the class."""

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.type = cls.__name__


class SecurityGroupInvalidPortRange(_Invalid):
    def __init__(self) -> None:
        super().__init__("For TCP/UDP protocols, port_range_min must be <= port_range_max")


class SecurityGroupInvalidProtocolForPort(_Invalid):
    def __init__(self, protocol: object) -> None:
        super().__init__(f"Ports cannot be specified for protocol {protocol}. Ports are only "
                         "supported for DCCP, SCTP, TCP, UDP, UDPLITE.")


class SecurityGroupInvalidPortValue(_Invalid):
    def __init__(self, port: object) -> None:
        super().__init__(f"Invalid value for port {port}")


class SecurityGroupInvalidIcmpValue(_Invalid):
    def __init__(self, field: str, attr: str, value: object) -> None:
        super().__init__(f"Invalid value for ICMP {field} ({attr}) {value}. It must be 0 "
                         "to 255.")


class SecurityGroupMissingIcmpType(_Invalid):
    def __init__(self, value: object) -> None:
        super().__init__(f"ICMP code (port-range-max) {value} is provided but ICMP type "
                         "(port-range-min) is missing.")


class SecurityGroupEthertypeConflictWithProtocol(_Invalid):
    def __init__(self, ethertype: str, protocol: str) -> None:
        super().__init__(f"Invalid ethertype {ethertype} for protocol {protocol}.")


class SecurityGroupRuleInvalidProtocol(_Invalid):
    def __init__(self, protocol: object) -> None:
        super().__init__(f"Security group rule protocol {protocol} not supported. Only "
                         f"protocol values {SUPPORTED_PROTOCOLS} and integer "
                         "representations [0 to 255] are supported.")


class SecurityGroupRuleInvalidEtherType(_Invalid):
    def __init__(self, ethertype: object) -> None:
        super().__init__(f"Security group rule for ethertype '{ethertype}' not supported. "
                         f"Allowed values are {list(ETHERTYPES)}.")


class SecurityGroupRuleParameterConflict(_Invalid):
    def __init__(self, ethertype: str, cidr: str) -> None:
        super().__init__(f"Conflicting value ethertype {ethertype} for CIDR {cidr}")


class SecurityGroupMultipleRemoteEntites(_Invalid):  # sic: Neutron's spelling
    def __init__(self) -> None:
        super().__init__("Only one of remote_ip_prefix or remote_group_id or "
                         "remote_address_group_id may be provided.")


class SecurityGroupProtocolRequiredWithPorts(_Invalid):
    def __init__(self) -> None:
        super().__init__("Must also specify protocol if port range is given.")


class SecurityGroupNotSingleGroupRules(_Invalid):
    def __init__(self) -> None:
        super().__init__("Only allowed to update rules for one security profile at a time")


class SecurityGroupRulesNotSingleProject(_Invalid):
    def __init__(self) -> None:
        super().__init__("Multiple project_ids in bulk security group rule create not "
                         "allowed")


class InvalidCIDR(_Invalid):
    def __init__(self, value: object) -> None:
        super().__init__(f"Invalid CIDR {value} given as IP prefix.")


class PortSecurityAndIPRequiredForSecurityGroups(_Invalid):
    def __init__(self) -> None:
        super().__init__("Port security must be enabled and port must have an IP address "
                         "in order to use security groups.")


class PortSecurityPortHasSecurityGroup(Conflict):
    type = "PortSecurityPortHasSecurityGroup"

    def __init__(self) -> None:
        super().__init__("Port has security group associated. Cannot disable port security "
                         "or IP address until security group is removed.")
