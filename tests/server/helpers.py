"""Test helpers for the server: the running app, a fake agent and a fake Nova."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from vifwire.app import create_app
from vifwire.bus.base import SERVER_TOPIC
from vifwire.bus.local import LocalBus
from vifwire.settings import Settings
from vifwire.trace import Tracer

HOST = "compute-1"


@dataclass
class FakeNova:
    """A real HTTP server recording os-server-external-events posts.

    Like Nova, it answers 400 to a whole post when one of its events is invalid:
    here, an event for a server in `bad_servers` (real Nova: a server_uuid that
    is not a UUID). Other posts get the next scripted status, then 200.
    """

    url: str = ""
    posts: list[list[dict[str, Any]]] = field(default_factory=list)  # answered 200
    # Per post in `posts`: its X-Vifwire-Event-Revisions, parsed (None: absent or misfit).
    revisions: list[list[int] | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # keeps the two aligned
    statuses: list[int] = field(default_factory=list)  # scripted answers, then 200
    posted: threading.Event = field(default_factory=threading.Event)
    bad_servers: set[str] = field(default_factory=set)
    refused: list[list[dict[str, Any]]] = field(default_factory=list)  # answered 400
    max_body: int = 0  # bytes; a larger post is answered 413 (0: no limit)
    too_large: int = 0  # posts answered 413

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event received, repeats too."""
        return [e for post in self.posts for e in post]

    def transitions(self) -> list[tuple[str, str, str, int | None]]:
        """(server, tag, name, revision) of every event received, repeats too."""
        with self.lock:
            return [(e["server_uuid"], e["tag"], e["name"], revs[i] if revs else None)
                    for post, revs in zip(self.posts, self.revisions, strict=True)
                    for i, e in enumerate(post)]


@dataclass
class Stack:
    """A running app with an HTTP client, its bus and tracer."""

    client: httpx.AsyncClient
    bus: LocalBus
    tracer: Tracer
    settings: Settings
    app: Any

    async def rpc(self, method: str, **kwargs: Any) -> Any:
        return await self.bus.call(SERVER_TOPIC, method, **kwargs)

    async def register_agent(self, host: str = HOST) -> None:
        await self.rpc("report_state", agent={
            "host": host, "agent_type": "Open vSwitch agent",
            "binary": "neutron-openvswitch-agent", "topic": "N/A",
            "configurations": {"bridge_mappings": {}}, "start_flag": True})


class FakeAgent:
    """Records what the server casts to one host's agent topic."""

    def __init__(self) -> None:
        self.bound: list[dict[str, Any]] = []
        self.unbound: list[str] = []

    async def port_bound(self, port: dict[str, Any]) -> None:
        self.bound.append(port)

    async def port_unbound(self, port_id: str) -> None:
        self.unbound.append(port_id)


@asynccontextmanager
async def running(settings: Settings, bus: LocalBus | None = None) -> AsyncIterator[Stack]:
    bus = bus or LocalBus()
    tracer = Tracer("server", None)
    app = create_app(settings, bus, tracer, notifier_backoff_s=0.05)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield Stack(client, bus, tracer, settings, app)
