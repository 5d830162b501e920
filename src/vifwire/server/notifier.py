"""Nova notifier: delivers the outbox's events to os-server-external-events.

One sender task, fed in memory: a service that committed outbox rows hands the
same events to `send()`, which queues them and sets an asyncio.Event; the task
then posts everything queued in one request. Reading the outbox back for each
post cost a transaction per event in a boot storm; the table is read at start,
for rows a stopped or crashed process left behind, and then every
ORPHAN_CHECK_S for rows older than that: with several server
processes each sends what its own transactions wrote, and a process that died
with rows queued leaves them to the others.
What happens to the events depends on Nova's answer:

* 200, 207 or 404: Nova took the post (per-event codes, logged when not 200,
  say which events found no server); the rows are deleted.
* 400, 413 or 422: Nova validates the whole body (and its size) and acts on
  none of it when one event is bad or the body is too large. A batch of several
  events is bisected and each half posted again, so the good events are
  delivered and only an event Nova refuses on its own is dropped (logged with
  Nova's reason): retrying it could never succeed.
* anything else, or no answer (Nova unreachable, a timeout): the rows are kept
  and retried with exponential backoff.

Rows leave the outbox only after such an answer for them, so no event is lost,
and a batch Nova refused as a whole was acted on by no one, so posting its
halves sends no event twice. Events that arrive while a post is in flight go in
the next post; a post carries at most MAX_EVENTS_PER_POST events, so a backlog
stays under Nova's request size limit. There is no batching delay: the first
event after an idle period is posted at once.

Repeats across a crash: the rows of a post Nova accepted are deleted in one
commit as soon as its answer is read, before the next post leaves
(`outbox.Ledger`, which also locks each post's rows on PostgreSQL and MariaDB
so two processes never post one row at once). A SIGKILL can therefore make the
next start post again at most the one post in flight when it struck, and only
if it struck after Nova acted on it and before that commit. That window is the
answer's trip back, the loop's other ready work and the commit: about 1-30 ms
in a storm on a loaded machine, and in a storm the notifier is nearly always in
flight, so a kill mid-storm often repeats that one post
(tests/server/test_notifier_crash.py: 13 repeated events in 22 kills, every one
from the post in flight). No sender can close this window alone: a kill after
Nova acted and before any byte of its answer arrived leaves the sender's state
exactly as a kill before the post did, so it must either repeat or risk losing
an event. It repeats, and the receiver makes the repeat harmless: every post
carries `X-Vifwire-Event-Revisions` (`vifwire.nova_revisions`), the revision of
each event's outbox key, so a receiver can act once per transition (server,
tag, name, revision) and answer a repeat as it answered the first. The compute
emulator's Nova does, and counts the repeats apart: the crash test asserts zero
acted-on duplicates, the chaos bench reports them (target 0), both next to the
raw repeats. Real Nova ignores the header; a repeated event there finds no
waiter and is only logged. The cost of the early delete is one small
transaction per post (~50-90 us of CPU on SQLite); in a storm events queue
while a post is in flight, so there are fewer posts than VMs.

`nova_url` is checked when the notifier is built (and by the stack before it
starts, see `check_nova_url`): a URL the client cannot use is one clear error
at start, not a sender task failing while the outbox grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine

from vifwire import nova_revisions
from vifwire.aio import cancel_and_wait
from vifwire.keystone import KeystoneUnavailable, ServiceAuth
from vifwire.nova_token import ensure_token
from vifwire.server import outbox
from vifwire.server._db import run_read, transaction
from vifwire.server._utils import utcnow
from vifwire.server.nova_client import NovaUnreachable, NovaUrlError, make_client, parse_url
from vifwire.settings import Settings
from vifwire.trace import Stage, Tracer

log = logging.getLogger(__name__)

EVENTS_PATH = "/os-server-external-events"
ACCEPTED_STATUSES = frozenset({200, 207, 404})  # Nova took the post
# Nova refused the whole body, and acted on none of it; 413: too large.
REFUSED_STATUSES = frozenset({400, 413, 422})
# Nova, like Neutron, refuses bodies over oslo.middleware's max_request_body_size
# (114688 bytes by default) with a 413. An event is ~150 bytes in JSON, so a
# backlog (Nova down during a storm) goes out in posts of this many events.
MAX_EVENTS_PER_POST = 200
ORPHAN_CHECK_S = 10.0


def events_url(nova_url: str) -> str:
    """`{nova_url}/os-server-external-events`; NovaUrlError if nova_url is unusable."""
    parse_url(nova_url)
    if "?" in nova_url or "#" in nova_url:  # the events path is appended to it
        raise NovaUrlError(f"Nova URL {nova_url!r} must not have a query or fragment")
    return f"{nova_url.rstrip('/')}{EVENTS_PATH}"


def check_nova_url(nova_url: str) -> None:
    """A startup check: raise NovaUrlError (one line) if the notifier could not post there."""
    events_url(nova_url)


class NovaNotifier:
    def __init__(self, engine: Engine, settings: Settings, tracer: Tracer,
                 min_backoff_s: float = 0.1, max_backoff_s: float = 10.0,
                 timeout_s: float = 10.0, orphan_check_s: float = ORPHAN_CHECK_S) -> None:
        self._engine = engine
        # Built here, not in the task, so a bad nova_url fails the app's start.
        # With a [nova] service user the post carries its Keystone token (as Neutron's
        # notifier does through keystoneauth1); without one, the run dir's shared secret.
        self._auth = ServiceAuth(settings.nova_auth) if settings.nova_auth else None
        self._token: str | None = None if self._auth else ensure_token(settings.run_dir)
        self._client = make_client(settings.nova_client, events_url(settings.nova_url),
                                   timeout=timeout_s, token=self._token)
        self._tracer = tracer
        self._min_backoff = min_backoff_s
        self._max_backoff = max_backoff_s
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._queue: dict[str, outbox.Event] = {}  # by key, in order: to post
        self._ledger = outbox.Ledger(engine)
        # Keys Nova settled whose delete failed (DB trouble): deleted before the next post.
        self._settled: list[str] = []
        self._idle = asyncio.Event()  # nothing queued, nothing in flight
        self._reload = True  # read the table before the next post
        self._reload_before: datetime | None = None  # only rows older than this
        self._orphan_check_s = orphan_check_s
        self._orphan_timer: asyncio.TimerHandle | None = None
        self.sent = 0  # events Nova accepted, for tests and stats
        self.refused = 0  # events Nova refused on their own (400/422), dropped

    def send(self, events: list[outbox.Event]) -> None:
        """Queue events whose outbox rows are committed; they are posted at once."""
        for event in events:
            self._queue[event.key] = event
        self._idle.clear()
        self._wakeup.set()

    async def wait_idle(self) -> None:
        """Return once everything queued was settled or dropped and no post is in
        flight: what a test awaits to prove that nothing more will be posted."""
        await self._idle.wait()

    def start(self) -> None:
        self._idle.clear()
        self._wakeup.set()
        self._task = asyncio.create_task(self._run(), name="nova-notifier")
        self._task.add_done_callback(_log_crash)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        try:
            self._delete_settled()
        except Exception:  # the next start posts them again
            log.warning("could not clear %d settled outbox rows", len(self._settled))
        self._ledger.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._orphan_timer = loop.call_later(self._orphan_check_s, self._look_for_orphans)
        backoff = self._min_backoff
        try:
            while True:
                if not self._queue and not self._reload and not self._settled:
                    self._idle.set()
                await self._wakeup.wait()
                self._wakeup.clear()
                try:
                    delivered = await self._send_pending()
                except Exception:  # DB trouble: keep the loop alive, try later
                    log.exception("nova notifier failed to read or clear the outbox")
                    self._ledger.release()
                    delivered = False
                if delivered:
                    backoff = self._min_backoff
                    continue
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                self._wakeup.set()
        finally:
            if self._orphan_timer is not None:
                self._orphan_timer.cancel()
            await self._client.close()

    def _look_for_orphans(self) -> None:
        """Every ORPHAN_CHECK_S: read rows older than that (a dead process's) again."""
        self._reload = True
        self._reload_before = utcnow() - timedelta(seconds=self._orphan_check_s)
        self._idle.clear()
        self._wakeup.set()
        loop = asyncio.get_running_loop()
        self._orphan_timer = loop.call_later(self._orphan_check_s, self._look_for_orphans)

    async def _send_pending(self) -> bool:
        """Post every queued event once; False when Nova must be tried again."""
        self._delete_settled()  # what Nova took, out before anything else leaves
        if self._reload:
            before = self._reload_before
            stored = await run_read(self._engine, lambda conn: outbox.pending(conn, before))
            self._reload, self._reload_before = False, None
            # Queued ones keep their place; rows this process already settled
            # but not yet deleted are not posted again.
            settled = set(self._settled)
            self._queue = {**{e.key: e for e in stored if e.key not in settled}, **self._queue}
        rows = list(itertools.islice(self._queue.values(), MAX_EVENTS_PER_POST))
        if not rows:
            return True
        delivered = await self._deliver(rows)
        if delivered and self._queue:
            self._wakeup.set()  # more than one post's worth was queued: the next, at once
        return delivered

    async def _deliver(self, rows: list[outbox.Event]) -> bool:
        """Post `rows`; True once every one left the outbox, False to retry the rest later."""
        taken = self._ledger.take([r.key for r in rows])
        if len(taken) < len(rows):  # locked or gone: another process is posting them
            for row in rows:
                if row.key not in taken:
                    self._queue.pop(row.key, None)
            rows = [r for r in rows if r.key in taken]
            if not rows:
                self._ledger.release()
                return True
        answer = await self._post(rows)
        if answer is None:
            self._ledger.release()
            return False
        status, body, sent_at = answer
        if status in REFUSED_STATUSES and len(rows) > 1:
            # Nova acted on none of them: find the bad ones by halves, in order
            # (a port's plugged still goes before its unplugged). A half that
            # must be retried stops here; its rows and the rest stay queued.
            self._ledger.release()
            half = len(rows) // 2
            return await self._deliver(rows[:half]) and await self._deliver(rows[half:])
        if status in REFUSED_STATUSES:
            row = rows[0]
            log.warning("nova refused %s for server %s port %s with %d (%s); dropped",
                        row.name, row.server_uuid, row.tag, status, _reason(body))
            self.refused += 1
            self._settle(rows)
            return True
        if status == 404:
            log.info("nova knows no server for any of %d events", len(rows))
        _log_event_codes(body)
        self.sent += len(rows)
        for row in rows:
            if row.name == outbox.PLUGGED:
                self._tracer.mark(Stage.EVENT_SENT, row.tag, t=sent_at)
        self._settle(rows)
        return True

    async def _post(self, rows: list[outbox.Event]) -> tuple[int, bytes, float] | None:
        """Nova's final answer to one post of `rows` and when it left; None to retry."""
        events = [r.body() for r in rows]
        # Names each event's transition, so a receiver can tell a repeat (vifwire.nova_revisions).
        headers = {nova_revisions.HEADER: nova_revisions.format_revisions(
            [r.revision for r in rows])}
        # Stamped when the post leaves, marked only once Nova took it.
        if self._auth is not None and not await self._renew_token():
            return None
        sent_at = time.time()
        try:
            status, body = await self._client.post_json({"events": events}, headers)
        except NovaUnreachable as exc:
            log.warning("nova unreachable (%s); %d events kept", exc, len(events))
            return None
        if status == 401 and self._auth is not None:
            log.warning("nova refused the service token; %d events kept", len(events))
            self._auth.invalidate()  # the next try gets a new one
            return None
        if status not in ACCEPTED_STATUSES | REFUSED_STATUSES:
            log.warning("nova answered %d; %d events kept", status, len(events))
            return None
        return status, body, sent_at

    async def _renew_token(self) -> bool:
        """The service user's current token on the client; False (retry later) when
        Keystone cannot give one."""
        assert self._auth is not None
        try:
            token = await self._auth.token()
        except KeystoneUnavailable as exc:
            log.warning("no token for nova: %s", exc)
            return False
        if token != self._token:
            self._token = token
            self._client.set_token(token)
        return True

    def _settle(self, rows: list[outbox.Event]) -> None:
        """Nova settled these: off the queue, and out of the table in one commit now."""
        keys = [row.key for row in rows]
        for key in keys:
            self._queue.pop(key, None)
        try:
            self._ledger.settle(keys)
        except Exception:
            # Never posted again by this process; deleted before its next post
            # (the loop backs off until the database lets it).
            self._settled.extend(keys)
            raise

    def _delete_settled(self) -> None:
        if self._settled:
            keys = self._settled
            transaction(self._engine, lambda conn: outbox.remove(conn, keys))
            self._settled = []


def _log_event_codes(body: bytes) -> None:
    for event in _results(body):
        if event.get("code") not in (None, 200):
            log.info("nova: event %s for %s: code %s", event.get("name"),
                     event.get("server_uuid"), event.get("code"))


def _results(body: bytes) -> list[dict[str, Any]]:
    try:
        return list(orjson.loads(body).get("events", []))
    except (ValueError, AttributeError):
        return []


def _reason(body: bytes) -> str:
    """Nova's error message (`{"badRequest": {"message": ...}}`), else the body's start."""
    with contextlib.suppress(ValueError, AttributeError, StopIteration, TypeError):
        message = next(iter(orjson.loads(body).values())).get("message")
        if message:
            return str(message)
    return body[:200].decode(errors="replace")


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s crashed", task.get_name(), exc_info=task.exception())
