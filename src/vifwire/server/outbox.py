"""The Nova event outbox: rows written in the same transaction as the status change.

The key names the transition (port, event, the port's new revision), so one
transition can only ever yield one row, and a row leaves the table only once
Nova accepted it or refused it for good. Services enqueue, and hand the
`Event`s they wrote to the notifier once their transaction committed; the
notifier reads the table itself only at start (rows a stopped or crashed
process left behind) and deletes what Nova settled.

`Ledger` is how a notifier takes rows for one post and clears them after it.
The rows Nova accepted leave the table in a commit made as soon as its answer
is read and before anything else is posted, so a crash (SIGKILL at any point)
can make the next start post again at most the one post that was in flight:
the window between Nova acting on a post and that commit is the only one, and
no sender can close it alone. The receiver does: each post names its events'
transitions by the revision in their keys (`vifwire.nova_revisions`), and the
compute emulator acts once per transition, answering a repeat as the first;
real Nova ignores the header and a repeat there is only logged (see
vifwire.server.notifier for the measured window). On PostgreSQL and MariaDB,
where several server processes share the table, each post runs in a
transaction that first locks its rows with `FOR UPDATE SKIP LOCKED`: a row
another process is posting (its own, or one it picked up from a dead process)
is skipped, never posted twice at once, and the lock goes with the delete in
one commit. SQLite has one writer process, so it posts without a claim.

Events, as real Neutron sends them (neutron/notifiers/nova.py), for ports
whose device_owner starts with `compute:` and that have a device_id:

* `network-vif-plugged`: the port went ACTIVE (the agent wired the VIF);
* `network-vif-unplugged`: it went from ACTIVE to DOWN (the VIF is gone from
  the host, or the port moved to another host);
* `network-vif-deleted`: the port was deleted, whatever its status. A delete
  sends no vif-unplugged: Nova detaches the interface on vif-deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select

from vifwire.db.fast import Fast
from vifwire.db.schema import nova_outbox
from vifwire.server._db import transaction
from vifwire.server._utils import utcnow

_INSERT = Fast(insert(nova_outbox))
_PENDING = select(nova_outbox).order_by(nova_outbox.c.created_at, nova_outbox.c.key)
_REMOVE = delete(nova_outbox).where(nova_outbox.c.key.in_(bindparam("keys", expanding=True)))
_REMOVE_ONE = Fast(delete(nova_outbox).where(nova_outbox.c.key == bindparam("key")))
_CLAIM = (select(nova_outbox.c.key)
          .where(nova_outbox.c.key.in_(bindparam("keys", expanding=True)))
          .with_for_update(skip_locked=True))
# A storm's posts mostly carry one event: that claim is prebuilt.
_CLAIM_ONE = Fast(select(nova_outbox.c.key).where(nova_outbox.c.key == bindparam("key"))
                  .with_for_update(skip_locked=True))
# Dialects where several processes share the outbox and rows are locked per post.
LOCKING_DIALECTS = frozenset({"postgresql", "mysql", "mariadb"})

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

    @property
    def revision(self) -> int:
        """The port revision the key names: with tag, name and server, the transition."""
        return int(self.key.rsplit(":", 1)[1])

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


class Ledger:
    """Takes rows for one post and clears the ones Nova settled (see the module doc).

    Use: `take(keys)` -> the keys this process may post now; then `settle(keys)`
    (delete them and commit) or `release()` (the post failed: unlock, keep them).
    On a locking dialect the ledger holds one connection of its own, so a claim
    open across a post never takes the thread's connection from the services.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.locking = engine.dialect.name in LOCKING_DIALECTS
        self._held: Connection | None = None

    def take(self, keys: list[str]) -> set[str]:
        if not self.locking:
            return set(keys)
        with self._guard() as conn:
            if conn.in_transaction():
                conn.rollback()
            conn.begin()
            if len(keys) == 1:
                return set(_CLAIM_ONE.execute(conn, {"key": keys[0]}).scalars())
            return set(conn.execute(_CLAIM, {"keys": keys}).scalars())

    def settle(self, keys: list[str]) -> None:
        """Delete `keys` and commit, before anything else is posted."""
        if not self.locking:
            if keys:
                transaction(self._engine, lambda conn: remove(conn, keys))
            return
        with self._guard() as conn:
            if not conn.in_transaction():  # a claim lost with its connection
                conn.begin()
            if keys:
                remove(conn, keys)
            conn.commit()

    def release(self) -> None:
        held = self._held
        if held is not None and held.in_transaction():
            with self._guard() as conn:
                conn.rollback()  # the rows are unlocked, still queued

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[Connection]:
        """The held connection; dropped on any error (a new one next time)."""
        if self._held is None or self._held.closed or self._held.invalidated:
            self._held = self._engine.connect()
        try:
            yield self._held
        except BaseException:
            self.close()
            raise
