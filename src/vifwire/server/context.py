"""What every service needs, built once by `server.services.running` and passed down."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from vifwire.bus.base import Bus
from vifwire.server.firewalls import FirewallCasts
from vifwire.server.l2pop import L2Population
from vifwire.server.liveness import Liveness
from vifwire.server.outbox import Event
from vifwire.settings import Settings
from vifwire.trace import Tracer


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
    firewalls: FirewallCasts = field(init=False)

    def __post_init__(self) -> None:
        self.liveness = Liveness(self.settings.agent_down_time_s)
        self.l2pop = L2Population(self)
        self.firewalls = FirewallCasts(self)
