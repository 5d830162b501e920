"""What every service needs, built once by `server.services.running` and passed down."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from sqlalchemy import Engine

from vifwire.bus.base import Bus
from vifwire.server.l2pop import L2Population
from vifwire.server.liveness import Liveness
from vifwire.server.outbox import Event
from vifwire.settings import Settings
from vifwire.trace import Tracer

# Whether the caller of the request being served is an admin, for the few rules
# a service itself applies (an admin may delete a project's default security
# group, as on Neutron, which is how Tempest cleans up). noauth makes every caller
# an admin, as Neutron's noauth context does: hence the default. The seam for the
# request context of issue 11 item 1: the API sets it per request from the
# caller's roles (`caller_is_admin.set(ctx.is_admin)`).
caller_is_admin: ContextVar[bool] = ContextVar("vifwire_caller_is_admin", default=True)


@dataclass
class Context:
    engine: Engine
    settings: Settings
    bus: Bus
    tracer: Tracer
    # Hands the Nova notifier the outbox events a committed transaction wrote.
    send_events: Callable[[list[Event]], None] = field(default=lambda events: None)
    liveness: Liveness = field(init=False)
    l2pop: L2Population = field(init=False)

    def __post_init__(self) -> None:
        self.liveness = Liveness(self.settings.agent_down_time_s)
        self.l2pop = L2Population(self)
