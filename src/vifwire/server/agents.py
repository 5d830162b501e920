"""Agents: heartbeats upserted by `report_state`, liveness computed on read.

An agent is alive when its last heartbeat is newer than `agent_down_time_s`;
nothing ever marks it dead, so a restarted server needs no state to recover.
Liveness for binding is `vifwire.server.liveness`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from vifwire.db.schema import agents
from vifwire.messages import AgentState
from vifwire.server import faults
from vifwire.server._db import read, run_transaction
from vifwire.server._query import Filters, matches, where
from vifwire.server._utils import agent_time, dumps, loads, new_id, utcnow
from vifwire.server.context import Context
from vifwire.server.liveness import OVS_AGENT_TYPE, is_alive

__all__ = ["OVS_AGENT_TYPE", "AgentService"]


COLUMNS = {
    "id": agents.c.id,
    "agent_type": agents.c.agent_type,
    "binary": agents.c.binary,
    "host": agents.c.host,
    "topic": agents.c.topic,
    "admin_state_up": agents.c.admin_state_up,
    "description": agents.c.description,
}


class AgentService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def render(self, row: Any) -> dict[str, Any]:
        return {
            "id": row.id,
            "agent_type": row.agent_type,
            "binary": row.binary,
            "host": row.host,
            "topic": row.topic,
            "alive": is_alive(row.heartbeat_timestamp, self.ctx.settings.agent_down_time_s),
            "admin_state_up": row.admin_state_up,
            "availability_zone": None,
            "configurations": loads(row.configurations),
            "created_at": agent_time(row.created_at),
            "started_at": agent_time(row.started_at),
            "heartbeat_timestamp": agent_time(row.heartbeat_timestamp),
            "description": row.description,
            "resources_synced": None,
        }

    def _get(self, conn: Connection, agent_id: str) -> Any:
        row = conn.execute(select(agents).where(agents.c.id == agent_id)).first()
        if row is None:
            raise faults.AgentNotFound(agent_id)
        return row

    def show(self, agent_id: str) -> dict[str, Any]:
        return self.render(read(self.ctx.engine, lambda conn: self._get(conn, agent_id)))

    def list(self, filters: Filters, visible_to: str | None = None) -> list[dict[str, Any]]:
        """Every agent: who may see them is the API's policy check (admin only)."""
        stmt, rest = where(select(agents), COLUMNS, filters)
        rows = read(self.ctx.engine, lambda conn: list(conn.execute(
            stmt.order_by(agents.c.host, agents.c.agent_type))))
        return [a for a in map(self.render, rows) if matches(a, rest)]

    # Writes are awaitable, as every resource service's are (`vifwire.api.services`);
    # agents have no revision_number, so `if_revision` is always None.
    async def update(self, agent_id: str, body: dict[str, Any],
                     if_revision: int | None = None) -> dict[str, Any]:
        def work(conn: Connection) -> Any:
            self._get(conn, agent_id)
            values = {k: body[k] for k in ("admin_state_up", "description") if k in body}
            if values:
                conn.execute(update(agents).where(agents.c.id == agent_id).values(**values))
            return self._get(conn, agent_id)
        row = await run_transaction(self.ctx.engine, work)
        self.ctx.liveness.forget(row.host)
        return self.render(row)

    async def delete(self, agent_id: str) -> None:
        def work(conn: Connection) -> None:
            self._get(conn, agent_id)
            conn.execute(delete(agents).where(agents.c.id == agent_id))
        await run_transaction(self.ctx.engine, work)
        self.ctx.liveness.forget()

    async def report(self, state: AgentState) -> None:
        """Upsert the heartbeat; a racing first insert falls back to the update."""
        now = utcnow()
        key = (agents.c.agent_type == state["agent_type"], agents.c.host == state["host"])
        values: dict[str, Any] = {"binary": state["binary"], "topic": state["topic"],
                                  "configurations": dumps(state["configurations"]),
                                  "heartbeat_timestamp": now}
        if state.get("start_flag"):
            values["started_at"] = now

        def work(conn: Connection) -> None:
            if conn.execute(update(agents).where(*key).values(**values)).rowcount:
                return
            try:
                with conn.begin_nested():
                    conn.execute(insert(agents).values(
                        id=new_id(), agent_type=state["agent_type"], host=state["host"],
                        admin_state_up=True, description="", created_at=now,
                        started_at=now, **{k: v for k, v in values.items()
                                           if k != "started_at"}))
            except IntegrityError:
                conn.execute(update(agents).where(*key).values(**values))
        await run_transaction(self.ctx.engine, work)
