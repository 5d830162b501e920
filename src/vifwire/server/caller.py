"""Who is calling, for the few rules a service itself applies.

A module of its own, importing nothing, so the API (which must not reach the
database) can set it per request: `vifwire.api.auth` does, from the request's
context.
"""

from __future__ import annotations

from contextvars import ContextVar

# Whether the caller of the request being served is an admin (an admin may delete a
# project's default security group, as on Neutron, which is how Tempest cleans up).
# noauth makes every caller an admin, as Neutron's noauth context does: hence the
# default.
caller_is_admin: ContextVar[bool] = ContextVar("vifwire_caller_is_admin", default=True)
