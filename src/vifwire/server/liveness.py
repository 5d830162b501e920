"""Is there a live OVS agent on a host? Asked by every bind.

An agent is alive when its last heartbeat is newer than `agent_down_time_s`.
A yes stays true until the heartbeat plus `agent_down_time_s`, so `Liveness`
remembers it for up to LIVENESS_MEMORY_S (a changed admin_state_up, made here
or by another server process, is seen within that time); a no is never
remembered, so a new agent is bindable at once.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, select

from vifwire.db.fast import Fast
from vifwire.db.schema import agents
from vifwire.server._utils import utcnow

OVS_AGENT_TYPE = "Open vSwitch agent"
LIVENESS_MEMORY_S = 1.0


def is_alive(heartbeat: datetime, down_time_s: float, now: datetime | None = None) -> bool:
    return (now or utcnow()) - heartbeat < timedelta(seconds=down_time_s)


_HEARTBEAT_ON = Fast(select(agents.c.heartbeat_timestamp).where(
    agents.c.host == bindparam("host"), agents.c.agent_type == OVS_AGENT_TYPE,
    agents.c.admin_state_up.is_(True)))


class Liveness:
    """Whether an admin-up OVS agent on a host has a fresh heartbeat, remembering a
    yes for a short while (see the module doc)."""

    def __init__(self, down_time_s: float) -> None:
        self.down_time_s = down_time_s
        self._alive_until: dict[str, float] = {}  # host -> time.monotonic() deadline

    def alive_on(self, conn: Connection, host: str) -> bool:
        now = time.monotonic()
        if self._alive_until.get(host, 0.0) > now:
            return True
        heartbeat = _HEARTBEAT_ON.execute(conn, {"host": host}).scalar()
        if heartbeat is None:
            return False
        left = self.down_time_s - (utcnow() - heartbeat).total_seconds()
        if left <= 0:
            return False
        self._alive_until[host] = now + min(left, LIVENESS_MEMORY_S)
        return True

    def forget(self, host: str | None = None) -> None:
        if host is None:
            self._alive_until.clear()
        else:
            self._alive_until.pop(host, None)
