"""Reporting ports up and down to the server, batched by the calls in flight.

Workers say what each port's status should be (`want`); the reporter turns
that into `ports_up` / `ports_down` calls, at most `max_in_flight` at a time.
A port that becomes ready while fewer calls are in flight leaves at once;
while all are in flight it waits for the next free one, with whatever else
became ready meanwhile. So a lone port is reported at once and a burst costs a
few calls, with no timer anywhere. Two calls in flight (the default) halve the
wait behind a slow call that one would impose on a port ready just after it
left: under a 1,000-VM storm that wait was the agent's wired -> up p99.

Invariants:
- latest wish wins per port: up then down before sending sends only down;
- a port is in at most one call at a time: a wish for a port whose call is in
  flight waits for its answer, so the server sees each port's reports in order;
- a port is never reported twice in a row with the same status (`_sent`
  records the last status sent or in flight);
- on a bus error the batch goes back into the queue (unless a newer wish
  replaced it) and its call slot backs off, so no port is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from vifwire.agent.tasks import spawn
from vifwire.aio import cancel_and_wait
from vifwire.bus.base import SERVER_TOPIC, Bus, BusError
from vifwire.trace import Stage, Tracer

log = logging.getLogger(__name__)

Status = str  # "up" | "down"


class StatusReporter:
    def __init__(self, bus: Bus, host: str, tracer: Tracer, *, timeout: float = 30.0,
                 backoff: tuple[float, float] = (0.05, 5.0), max_in_flight: int = 2,
                 on_sent: Callable[[str, Status], None] | None = None) -> None:
        self._bus = bus
        self._host = host
        self._tracer = tracer
        self._timeout = timeout
        self._backoff = backoff
        self._on_sent = on_sent
        self._max_in_flight = max(1, max_in_flight)
        self._delay = backoff[0]
        self._pending: dict[str, Status] = {}
        self._sent: dict[str, Status] = {}
        self._in_flight: set[str] = set()  # ports whose call has not answered yet
        self._calls: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = spawn(self._run(), name="agent:reporter")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task, *self._calls)
            self._task = None

    def want(self, port_id: str, status: Status) -> None:
        if self._sent.get(port_id) == status:
            self._pending.pop(port_id, None)
            return
        self._pending[port_id] = status
        self._wake.set()

    def reported_up(self, port_id: str) -> bool:
        return self._sent.get(port_id) == "up"

    def forget(self, port_id: str) -> None:
        if port_id not in self._pending:
            self._sent.pop(port_id, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while len(self._calls) < self._max_in_flight:
                batch = {p: s for p, s in self._pending.items() if p not in self._in_flight}
                if not batch:
                    break
                for port_id in batch:
                    del self._pending[port_id]
                self._in_flight.update(batch)
                call = spawn(self._report(batch), name="agent:report")
                self._calls.add(call)
                call.add_done_callback(self._call_done)

    async def _report(self, batch: dict[str, Status]) -> None:
        """One call slot: send `batch` (ups, then downs), back off after a failure,
        then free its ports (`_call_done` frees the slot)."""
        try:
            ok = True
            for status, method in (("up", "ports_up"), ("down", "ports_down")):
                ids = [p for p, s in batch.items() if s == status]
                if ids and not await self._send(method, status, ids):
                    ok = False
            if ok:
                self._delay = self._backoff[0]
            else:
                await asyncio.sleep(self._delay)
                self._delay = min(self._delay * 2, self._backoff[1])
        finally:
            self._in_flight.difference_update(batch)

    def _call_done(self, call: asyncio.Task[None]) -> None:
        """A slot is free: the reporter looks again at what waited for one."""
        self._calls.discard(call)
        self._wake.set()

    async def _send(self, method: str, status: Status, ids: list[str]) -> bool:
        previous = {p: self._sent.get(p) for p in ids}
        self._sent.update(dict.fromkeys(ids, status))
        # Stamped when the report leaves, marked once the server took it.
        sent_at = time.time()
        try:
            done = await self._bus.call(SERVER_TOPIC, method, timeout=self._timeout,
                                        host=self._host, port_ids=ids)
        except BusError as exc:
            log.warning("%s of %d port(s) failed, will retry: %s", method, len(ids), exc)
            for port_id in ids:
                if self._sent.get(port_id) == status and port_id not in self._pending:
                    self._pending[port_id] = status
                before = previous[port_id]
                if before is None:
                    self._sent.pop(port_id, None)
                else:
                    self._sent[port_id] = before
            self._wake.set()
            return False
        if status == "up":
            for port_id in done or ():
                self._tracer.mark(Stage.UP, port_id, t=sent_at)
        if self._on_sent is not None:
            for port_id in ids:
                self._on_sent(port_id, status)
        return True
