"""The Nova event outbox: rows written in the same transaction as the status change.

The key names the transition (port, event, the port's new revision), so one
transition can only ever yield one row, and a row leaves the table only once
Nova accepted it or refused it for good. Services enqueue, and hand the
`Event`s they wrote to the notifier once their transaction committed; the
notifier reads the table itself only at start (rows a stopped or crashed
process left behind) and deletes what Nova settled.

Events, as real Neutron sends them (neutron/notifiers/nova.py), for ports
whose device_owner starts with `compute:` and that have a device_id:

* `network-vif-plugged`: the port went ACTIVE (the agent wired the VIF);
* `network-vif-unplugged`: it went from ACTIVE to DOWN (the VIF is gone from
  the host, or the port moved to another host);
* `network-vif-deleted`: the port was deleted, whatever its status. A delete
  sends no vif-unplugged: Nova detaches the interface on vif-deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select

from vifwire.db.fast import Fast
from vifwire.db.schema import nova_outbox
from vifwire.server._utils import utcnow

_INSERT = Fast(insert(nova_outbox))
_PENDING = select(nova_outbox).order_by(nova_outbox.c.created_at, nova_outbox.c.key)
_REMOVE = delete(nova_outbox).where(nova_outbox.c.key.in_(bindparam("keys", expanding=True)))
_REMOVE_ONE = Fast(delete(nova_outbox).where(nova_outbox.c.key == bindparam("key")))

PLUGGED = "network-vif-plugged"
UNPLUGGED = "network-vif-unplugged"
DELETED = "network-vif-deleted"


def wants_events(device_owner: str, device_id: str) -> bool:
    return bool(device_id) and device_owner.startswith("compute:")


@dataclass(frozen=True)
class Event:
    """One outbox row: an os-server-external-events entry and its outbox key."""

    key: str
    name: str
    server_uuid: str
    tag: str  # the port id
    status: str = "completed"

    def body(self) -> dict[str, str]:
        return {"name": self.name, "server_uuid": self.server_uuid, "tag": self.tag,
                "status": self.status}


def enqueue(conn: Connection, port: Any, name: str, revision: int) -> Event | None:
    """Queue `name` for a port row (needs id, device_id, device_owner) if Nova cares."""
    if not wants_events(port.device_owner, port.device_id):
        return None
    event = Event(f"{port.id}:{name}:{revision}", name, port.device_id, port.id)
    _INSERT.execute(conn, {"key": event.key, "name": name, "server_uuid": event.server_uuid,
                           "tag": event.tag, "status": event.status, "created_at": utcnow()})
    return event


def pending(conn: Connection, before: datetime | None = None) -> list[Event]:
    """Rows in the table, oldest first; only those created before `before` if given."""
    query = _PENDING if before is None else _PENDING.where(nova_outbox.c.created_at < before)
    return [Event(r.key, r.name, r.server_uuid, r.tag, r.status) for r in conn.execute(query)]


def remove(conn: Connection, keys: list[str]) -> None:
    if len(keys) == 1:
        _REMOVE_ONE.execute(conn, {"key": keys[0]})
    else:
        conn.execute(_REMOVE, {"keys": keys})
