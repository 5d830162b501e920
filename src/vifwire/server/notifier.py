"""Nova notifier: drains the outbox into os-server-external-events.

One sender task. `wake()` sets an asyncio.Event; the task then takes ALL pending
outbox rows, posts them in one request, and deletes them only after Nova
answered 200/207 (or 404/400/422: Nova will never accept those, so retrying is
pointless). Connection errors and other statuses keep the rows and retry with
exponential backoff. Rows that appear while a post is in flight set the event
again and go in the next post. There is no batching delay: the first wake after
an idle period posts at once. At start the event is set, so rows left by a
crash or an unreachable Nova are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from sqlalchemy import Engine

from vifwire.server import outbox
from vifwire.server._db import read, transaction
from vifwire.server.nova_client import NovaClient, NovaUnreachable
from vifwire.settings import Settings
from vifwire.trace import Stage, Tracer

log = logging.getLogger(__name__)

DROP_STATUSES = {200, 207, 400, 404, 422}


class NovaNotifier:
    def __init__(self, engine: Engine, settings: Settings, tracer: Tracer,
                 min_backoff_s: float = 0.1, max_backoff_s: float = 10.0,
                 timeout_s: float = 10.0) -> None:
        self._engine = engine
        self._url = f"{settings.nova_url.rstrip('/')}/os-server-external-events"
        self._tracer = tracer
        self._min_backoff = min_backoff_s
        self._max_backoff = max_backoff_s
        self._timeout = timeout_s
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0  # events Nova accepted, for tests and stats

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._wakeup.set()
        self._task = asyncio.create_task(self._run(), name="nova-notifier")
        self._task.add_done_callback(_log_crash)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = self._min_backoff
        client = NovaClient(self._url, timeout=self._timeout)
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                try:
                    delivered = await self._send_pending(client)
                except Exception:  # DB trouble: keep the loop alive, try later
                    log.exception("nova notifier failed to read or clear the outbox")
                    delivered = False
                if delivered:
                    backoff = self._min_backoff
                    continue
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                self._wakeup.set()
        finally:
            await client.close()

    async def _send_pending(self, client: NovaClient) -> bool:
        """Post every pending event once; False when Nova must be tried again."""
        rows = read(self._engine, outbox.pending)
        if not rows:
            return True
        events = [{"name": r.name, "server_uuid": r.server_uuid, "tag": r.tag,
                   "status": r.status} for r in rows]
        # Stamped when the post leaves, marked only once Nova took it.
        sent_at = time.time()
        try:
            status, body = await client.post_json({"events": events})
        except NovaUnreachable as exc:
            log.warning("nova unreachable (%s); %d events kept", exc, len(events))
            return False
        if status not in DROP_STATUSES:
            log.warning("nova answered %d; %d events kept", status, len(events))
            return False
        if status not in (200, 207):
            log.warning("nova refused events with %d: %s", status, body[:200])
        for event in _results(body):
            if event.get("code") not in (None, 200):
                log.info("nova: event %s for %s: code %s", event.get("name"),
                         event.get("server_uuid"), event.get("code"))
        keys = [r.key for r in rows]
        transaction(self._engine, lambda conn: outbox.remove(conn, keys))
        self.sent += len(rows)
        for row in rows:
            if row.name == outbox.PLUGGED:
                self._tracer.mark(Stage.EVENT_SENT, row.tag, t=sent_at)
        return True


def _results(body: bytes) -> list[dict[str, Any]]:
    try:
        return list(orjson.loads(body).get("events", []))
    except (ValueError, AttributeError):
        return []


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s crashed", task.get_name(), exc_info=task.exception())
