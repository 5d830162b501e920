"""Prometheus metrics for server workers and agents, hooked at the edges.

Nothing in the API, notifier or agent code calls this module: it sees what they
already do through the objects the process edge hands them.

- `MetricsTracer`: the `Tracer` every component marks port stages into; it
  also observes ACTIVE -> event-sent (server) and seen -> wired (agent, from
  the VIF's OVSDB event) and counts the ports wired. Both stages of a pair must
  be marked in one process; an event sent by another worker is not observed.
- `MetricsApp`: an ASGI wrapper counting requests and latency per route (ids
  folded into `{id}`) and status code, and answering `GET /metrics`.
- `MeteredBus`: a `Bus` proxy counting failed casts and calls.
- `count_database_errors`: an engine listener counting DBAPI errors.

Server workers share one set of counters through prometheus-client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the supervisor before the
workers import this module), so whichever worker answers a scrape answers for
all of them; the outbox backlog is a live count read at scrape time.
"""

from __future__ import annotations

import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from vifwire.bus.base import Bus, BusError
from vifwire.trace import Stage, Tracer

METRICS_PATH = "/metrics"
# Milliseconds matter on the plug path: buckets from 1 ms to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Ports between their first and last stage at once; older ones are forgotten.
MAX_PENDING = 100_000

# Its _count is the requests counter: one observe per request, no separate inc.
LATENCY = Histogram("vifwire_api_request_seconds", "API requests and their latency",
                    ["method", "route", "code"], buckets=LATENCY_BUCKETS)
BUS_ERRORS = Counter("vifwire_bus_errors", "Failed bus casts and calls", ["verb"])
DB_ERRORS = Counter("vifwire_database_errors", "DBAPI errors raised by the database")
ACTIVE_TO_EVENT = Histogram("vifwire_active_to_event_sent_seconds",
                            "Port ACTIVE committed -> network-vif-plugged posted to Nova",
                            buckets=LATENCY_BUCKETS)
SEEN_TO_WIRED = Histogram("vifwire_agent_plug_to_wired_seconds",
                          "VIF seen in OVSDB (plugged) -> local VLAN tag set",
                          buckets=LATENCY_BUCKETS)
PORTS_WIRED = Counter("vifwire_agent_ports_wired", "Ports the agent wired (tagged)")

_ID = re.compile(r"/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
MAX_ROUTES = 1_000


# end stage -> (start stage, histogram of the time between them)
_PAIRS: dict[str, tuple[str, Histogram]] = {
    Stage.EVENT_SENT: (Stage.ACTIVE, ACTIVE_TO_EVENT), Stage.WIRED: (Stage.SEEN, SEEN_TO_WIRED)}
_STARTS = frozenset({Stage.ACTIVE, Stage.SEEN})


class MetricsTracer(Tracer):
    """A Tracer whose marks also feed the stage histograms."""

    def __init__(self, component: str, directory: Any = None) -> None:
        super().__init__(component, directory)
        self._started: OrderedDict[tuple[str, str], float] = OrderedDict()

    def mark(self, stage: Stage | str, port_id: str, t: float | None = None, **extra: Any) -> None:
        t = time.time() if t is None else t
        super().mark(stage, port_id, t, **extra)
        if stage in _STARTS:
            self._started[(stage, port_id)] = t
            if len(self._started) > MAX_PENDING:
                self._started.popitem(last=False)
            return
        pair = _PAIRS.get(stage)
        if pair is None:
            return
        if stage == Stage.WIRED:
            PORTS_WIRED.inc()
        began = self._started.pop((pair[0], port_id), None)
        if began is not None:
            pair[1].observe(max(0.0, t - began))


def route_of(path: str) -> str:
    """`/v2.0/ports/<uuid>` -> `/v2.0/ports/{id}` (a path without "-" has no id)."""
    return _ID.sub("/{id}", path) if "-" in path else path


class _RouteMetrics:
    """One route's histogram children, per status code: looking a labelled child
    up costs more than observing it, so it is done once per code."""

    __slots__ = ("codes", "method", "route")

    def __init__(self, method: str, route: str) -> None:
        self.method, self.route = method, route
        self.codes: dict[int, Any] = {}

    def done(self, code: int, seconds: float) -> None:
        child = self.codes.get(code)
        if child is None:
            child = self.codes[code] = LATENCY.labels(self.method, self.route, str(code))
        child.observe(seconds)


class MetricsApp:
    """ASGI wrapper: per-route request counts and latency, and `GET /metrics`."""

    def __init__(self, app: Any, render: Callable[[], bytes]) -> None:
        self.app = app
        self.render = render
        # Bounded: past MAX_ROUTES distinct routes (odd paths) the rest share "other".
        self._routes: dict[tuple[str, str], _RouteMetrics] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    def _route(self, method: str, path: str) -> _RouteMetrics:
        key = (method, route_of(path))
        metrics = self._routes.get(key)
        if metrics is None:
            if len(self._routes) >= MAX_ROUTES:
                key = (method, "other")
                metrics = self._routes.get(key)
            if metrics is None:
                metrics = self._routes[key] = _RouteMetrics(*key)
        return metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH and scope["method"] == "GET":
            await _answer(send, self.render())
            return
        code = 500
        started = time.perf_counter()

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._route(scope["method"], scope["path"]).done(code, time.perf_counter() - started)


async def _answer(send: Any, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def renderer(live: Callable[[], Iterator[Any]] | None = None) -> Callable[[], bytes]:
    """Render this process's metrics, or every worker's in multiprocess mode,
    plus the `live` collector's gauges read at scrape time."""
    registry: Any
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    if live is not None:
        registry.register(_Live(live))
    return lambda: generate_latest(registry)


class _Forward:
    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Any]:
        return self._registry.collect()  # type: ignore[no-any-return]


class _Live:
    def __init__(self, collect: Callable[[], Iterator[Any]]) -> None:
        self.collect = collect


def outbox_backlog(engine: Any) -> Callable[[], Iterator[Any]]:
    """A live gauge: Nova events in the outbox, not yet posted or not yet pruned."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from vifwire.db.schema import nova_outbox

    def collect() -> Iterator[Any]:
        gauge = GaugeMetricFamily("vifwire_outbox_backlog", "Rows in the Nova event outbox")
        try:
            with engine.connect() as connection:
                count = connection.execute(select(func.count()).select_from(nova_outbox))
                gauge.add_metric([], float(count.scalar_one()))
        except SQLAlchemyError:
            return
        yield gauge

    return collect


def count_database_errors(engine: Any) -> None:
    from sqlalchemy import event

    event.listen(engine, "handle_error", lambda _context: DB_ERRORS.inc())


class MeteredBus(Bus):
    """Counts failed casts and calls; everything else goes straight to `inner`."""

    def __init__(self, inner: Bus) -> None:
        self.inner = inner

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def serve(self, topic: str, endpoint: object) -> None:
        await self.inner.serve(topic, endpoint)

    async def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        try:
            await self.inner.cast(topic, method, **kwargs)
        except BusError:
            BUS_ERRORS.labels("cast").inc()
            raise

    async def call(self, topic: str, method: str, timeout: float = 30.0, **kwargs: Any) -> Any:
        try:
            return await self.inner.call(topic, method, timeout, **kwargs)
        except BusError:
            BUS_ERRORS.labels("call").inc()
            raise

    def on_reconnect(self, callback: Any) -> None:
        self.inner.on_reconnect(callback)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
