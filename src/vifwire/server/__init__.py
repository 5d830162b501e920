"""The vifwire server: Neutron's plugin logic, the agent RPC endpoint, the Nova notifier.

Services only, no HTTP: `vifwire.server.services.running(settings, bus, tracer)`
owns their lifetime; the HTTP application over them is `vifwire.app.create_app`.
"""
