"""Neutron's faults: each one knows its HTTP status, Neutron type name and message.

The service layer raises these; the API maps them to `{"NeutronError": ...}` in
its single exception handler. Messages follow neutron-lib's wording.
"""

from __future__ import annotations


class ServerFault(Exception):
    """Base exception of the server package: a Neutron fault."""

    status = 500
    type = "HTTPInternalServerError"

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class BadRequest(ServerFault):
    status = 400
    type = "HTTPBadRequest"


class InvalidInput(BadRequest):
    type = "InvalidInput"

    def __init__(self, error: str) -> None:
        super().__init__(f"Invalid input for operation: {error}.")


class InvalidIpForSubnet(BadRequest):
    type = "InvalidIpForSubnet"

    def __init__(self, ip: str) -> None:
        super().__init__(f"IP address {ip} is not a valid IP for the specified subnet.")


class InvalidIpForNetwork(BadRequest):
    type = "InvalidIpForNetwork"

    def __init__(self, ip: str) -> None:
        super().__init__(f"IP address {ip} is not a valid IP for any of the subnets on the "
                         "specified network.")


class RequestTooLarge(ServerFault):
    status = 413
    type = "HTTPRequestEntityTooLarge"

    def __init__(self, limit: int) -> None:
        super().__init__("Request is too large.",
                         f"The request body is limited to {limit} bytes.")


class UnsupportedMediaType(ServerFault):
    status = 415
    type = "HTTPUnsupportedMediaType"

    def __init__(self) -> None:
        super().__init__("Unsupported Content-Type",
                         "The request body must be JSON (Content-Type: application/json).")


class NotFound(ServerFault):
    status = 404
    type = "HTTPNotFound"


class _Missing(NotFound):
    noun = ""

    def __init__(self, ident: str) -> None:
        super().__init__(f"{self.noun} {ident} could not be found.")


class NetworkNotFound(_Missing):
    type, noun = "NetworkNotFound", "Network"


class SubnetNotFound(_Missing):
    type, noun = "SubnetNotFound", "Subnet"


class PortNotFound(_Missing):
    type, noun = "PortNotFound", "Port"


class SubnetPoolNotFound(_Missing):
    type, noun = "SubnetPoolNotFound", "Subnet pool"


class AgentNotFound(_Missing):
    type, noun = "AgentNotFound", "Agent"


class TagNotFound(NotFound):
    type = "TagNotFound"

    def __init__(self, tag: str, resource_id: str) -> None:
        super().__init__(f"Tag {tag} could not be found for resource {resource_id}.")


class ExtensionNotFound(NotFound):
    type = "ExtensionNotFound"

    def __init__(self, alias: str) -> None:
        super().__init__(f"Extension with alias {alias} does not exist")


class Conflict(ServerFault):
    status = 409
    type = "Conflict"


class NetworkInUse(Conflict):
    type = "NetworkInUse"

    def __init__(self, net_id: str) -> None:
        super().__init__(f"Unable to complete operation on network {net_id}. There are one or "
                         "more ports still in use on the network.")


class SubnetInUse(Conflict):
    type = "SubnetInUse"

    def __init__(self, subnet_id: str) -> None:
        super().__init__(f"Unable to complete operation on subnet {subnet_id}: One or more "
                         "ports have an IP allocation from this subnet.")


class IpAddressInUse(Conflict):
    type = "IpAddressInUse"

    def __init__(self, net_id: str, ip: str) -> None:
        super().__init__(f"Unable to complete operation for network {net_id}. The IP address "
                         f"{ip} is in use.")


class MacAddressInUse(Conflict):
    type = "MacAddressInUse"

    def __init__(self, net_id: str, mac: str) -> None:
        super().__init__(f"Unable to complete operation for network {net_id}. The mac address "
                         f"{mac} is in use.")


class IpAddressGenerationFailure(Conflict):
    type = "IpAddressGenerationFailure"

    def __init__(self, net_id: str) -> None:
        super().__init__(f"No more IP addresses available on network {net_id}.")


class SegmentationIdInUse(Conflict):
    type = "SegmentationIdInUse"

    def __init__(self, network_type: str, seg_id: int, physnet: str | None) -> None:
        where = f" on physical network {physnet}" if physnet else ""
        super().__init__(f"Unable to create the network. The {network_type} segmentation id "
                         f"{seg_id}{where} is in use.")


class RevisionNumberConstraintFailed(ServerFault):
    status = 412
    type = "RevisionNumberConstraintFailed"

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"Constrained to {expected}, but current revision is {current}")


class NoNetworkAvailable(ServerFault):
    status = 503
    type = "NoNetworkAvailable"

    def __init__(self) -> None:
        super().__init__("Unable to create the network. No tenant network is available for "
                         "allocation.")


class ServiceUnavailable(ServerFault):
    status = 503
    type = "ServiceUnavailable"
