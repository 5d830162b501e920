"""Fixtures: the embedded server app (SQLite, in-process bus) and three hosts.

The server and every host's agent share the test's event loop and one
LocalBus, as the embedded stack shares them; each host has its own Open
vSwitch in its own namespace, joined by the underlay (rig.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from sqlalchemy import create_engine, text

from vifwire.app import create_app
from vifwire.bus.amqp import AmqpBus
from vifwire.bus.base import Bus
from vifwire.bus.local import LocalBus
from vifwire.settings import Settings
from vifwire.trace import Tracer

from .rig import Host, Underlay

PG_ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"


@dataclass
class Server:
    """The embedded server app on a bus (in-process unless told), with an HTTP client."""

    api: httpx.AsyncClient
    bus: Bus

    async def post(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = collection.rstrip("s")
        answer = await self.api.post(f"/v2.0/{collection}", json={kind: body})
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()[kind]
        return result

    async def network(self, name: str, cidr: str) -> dict[str, Any]:
        network = await self.post("networks", {"name": name})
        await self.post("subnets", {"network_id": network["id"], "cidr": cidr,
                                    "ip_version": 4})
        return network

    async def port(self, network: dict[str, Any], host: str, ip: str) -> dict[str, Any]:
        return await self.post("ports", {
            "network_id": network["id"], "fixed_ips": [{"ip_address": ip}],
            "binding:host_id": host, "device_owner": "compute:nova",
            "device_id": str(uuid.uuid4())})


@dataclass
class Cloud(Server):
    underlay: Underlay
    hosts: dict[str, Host]


@asynccontextmanager
async def serving(base: Path, database_url: str = "",
                  bus: Bus | None = None) -> AsyncIterator[Server]:
    bus = bus or LocalBus()
    await bus.start()
    # Nova is not part of this story: its notifier just fails to post (no listener).
    settings = Settings(run_dir=base / "server", host="server", database_url=database_url,
                        nova_url="http://127.0.0.1:9/v2.1")
    settings.run_dir.mkdir(parents=True)
    app = create_app(settings, bus, Tracer("server", None))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as api:
                yield Server(api, bus)
    finally:
        await bus.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest,
                 unavailable: Callable[[str, object], NoReturn]) -> Iterator[str]:
    """SQLite in the server's run dir, or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield ""
        return
    name = f"vifwire_ov_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    try:
        yield f"postgresql+psycopg://root@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
async def server(tmp_path: Path, database_url: str) -> AsyncIterator[Server]:
    async with serving(tmp_path, database_url) as running:
        yield running


@pytest.fixture(scope="session")
def amqp_vhost(unavailable: Callable[[str, object], NoReturn]) -> Iterator[str]:
    """A vhost of this session's own on the shared RabbitMQ."""
    vhost = f"vwov-{uuid.uuid4().hex[:8]}"
    try:
        _rabbitmqctl("add_vhost", vhost)
    except (OSError, subprocess.CalledProcessError) as exc:
        unavailable("RabbitMQ", exc)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    _rabbitmqctl("delete_vhost", vhost)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(params=["local"])
async def cloud(request: pytest.FixtureRequest) -> AsyncIterator[Cloud]:
    """Three hosts; the bus is in-process ("local"), or RabbitMQ ("amqp": the server
    and each agent with a connection of its own, as separate processes would)."""
    if os.geteuid() != 0 or not shutil.which("ovsdb-server"):
        pytest.skip("needs root and Open vSwitch")
    rig_id = uuid.uuid4().hex[:5]
    base = Path(f"/tmp/vw-overlay-{os.getpid()}-{rig_id}")
    underlay = Underlay(rig_id, base)
    agent_buses: list[Bus] = []
    if request.param == "amqp":
        url, prefix = request.getfixturevalue("amqp_vhost"), f"ov{rig_id}"

        def new_bus() -> Bus:
            return AmqpBus(url, prefix=prefix)
    else:
        shared = LocalBus()

        def new_bus() -> Bus:
            return shared
    try:
        underlay.create()
        hosts = {letter: underlay.add_host(letter) for letter in "abc"}
        async with serving(base, bus=new_bus()) as running:
            for host in hosts.values():
                bus = new_bus()
                if bus is not running.bus:
                    await bus.start()
                    agent_buses.append(bus)
                await host.start_agent(bus)
            yield Cloud(running.api, running.bus, underlay, hosts)
            await underlay.destroy()  # the agents stop before the server does
    finally:
        await underlay.destroy()
        for bus in agent_buses:
            await bus.stop()
        shutil.rmtree(base, ignore_errors=True)
