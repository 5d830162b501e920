"""The Nova event outbox: rows written in the same transaction as the status change.

The key names the transition (port, event, the port's new revision), so one
transition can only ever yield one row, and a row leaves the table only once
Nova accepted it or refused it for good. The notifier reads and deletes;
services only enqueue.

Events, as real Neutron sends them (neutron/notifiers/nova.py), for ports
whose device_owner starts with `compute:` and that have a device_id:

* `network-vif-plugged`: the port went ACTIVE (the agent wired the VIF);
* `network-vif-unplugged`: it went from ACTIVE to DOWN (the VIF is gone from
  the host, or the port moved to another host);
* `network-vif-deleted`: the port was deleted, whatever its status. A delete
  sends no vif-unplugged: Nova detaches the interface on vif-deleted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select

from vifwire.db.schema import nova_outbox
from vifwire.server._utils import utcnow

_INSERT = insert(nova_outbox)
_PENDING = select(nova_outbox).order_by(nova_outbox.c.created_at, nova_outbox.c.key)
_REMOVE = delete(nova_outbox).where(nova_outbox.c.key.in_(bindparam("keys", expanding=True)))

PLUGGED = "network-vif-plugged"
UNPLUGGED = "network-vif-unplugged"
DELETED = "network-vif-deleted"


def wants_events(device_owner: str, device_id: str) -> bool:
    return bool(device_id) and device_owner.startswith("compute:")


def enqueue(conn: Connection, port: Any, name: str, revision: int) -> bool:
    """Queue `name` for a port row (needs id, device_id, device_owner) if Nova cares."""
    if not wants_events(port.device_owner, port.device_id):
        return False
    conn.execute(_INSERT, {"key": f"{port.id}:{name}:{revision}", "name": name,
                           "server_uuid": port.device_id, "tag": port.id,
                           "status": "completed", "created_at": utcnow()})
    return True


def pending(conn: Connection) -> list[Any]:
    return list(conn.execute(_PENDING))


def remove(conn: Connection, keys: list[str]) -> None:
    conn.execute(_REMOVE, {"keys": keys})
