"""The vifwire server: Neutron's plugin logic, the agent RPC endpoint, the Nova notifier.

Entry point: `vifwire.server.app.create_app(settings, bus, tracer)`.
"""
