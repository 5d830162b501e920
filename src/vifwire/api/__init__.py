"""The Neutron v2.0 HTTP API: routing, request validation and fault mapping.

Handlers translate HTTP to service calls (vifwire.server.*) and back; they hold
no business logic and never import the agent, compute or ovsdbapp.
"""


class ApiError(Exception):
    """Base exception of the API package (faults themselves are ServerFault)."""
