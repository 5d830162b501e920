"""The Neutron v2.0 HTTP API: routing, request validation and fault mapping.

Handlers translate HTTP to calls on the services' typed interface
(`vifwire.api.services`) and back; they hold no business logic and import no
service or database module, nor the agent, compute or ovsdbapp. The faults they
raise and map are the server's (`vifwire.server.faults`). The application is
assembled above this package, in `vifwire.app`.
"""
