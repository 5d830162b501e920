"""Several servers allocating from one database at once: no IP, MAC or
segmentation id handed out twice.

Two server instances in one process (own engine, own event loop, own thread),
and -- as `vifwire server --workers 4` runs -- four server processes against
one PostgreSQL and one MariaDB database. The database's constraints arbitrate
(see `vifwire.db.schema`); the losers of a race run their transaction again.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import create_engine, inspect, text

from vifwire.settings import Settings

from .helpers import Stack, running

MYSQL_ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
PROCESSES = 4
PORTS_PER_PROCESS = 40
NETWORKS_PER_PROCESS = 5


async def _create(stack: Stack, member: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await stack.client.post(f"/v2.0/{member}s", json={member: body})
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()[member]
    return made


async def _create_ports(settings: Settings, net_id: str, count: int,
                        start: Any) -> list[dict[str, Any]]:
    async with running(settings) as stack:
        await asyncio.to_thread(start.wait)
        port = {"network_id": net_id}
        return list(await asyncio.gather(*(_create(stack, "port", port)
                                           for _ in range(count))))


async def test_two_servers_share_ipam(settings: Settings) -> None:
    async with running(settings) as stack:
        net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
        await stack.client.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/24"}})
    barrier = threading.Barrier(2)
    results: list[list[dict[str, Any]]] = [[], []]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            results[index] = asyncio.run(_create_ports(settings, net["id"], 60, barrier))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        await asyncio.to_thread(t.join)
    assert not errors, errors
    ips = [p["fixed_ips"][0]["ip_address"] for group in results for p in group]
    assert len(ips) == 120
    assert len(set(ips)) == 120


async def _one_process(settings: Settings, net_id: str, start: Any) -> dict[str, list[Any]]:
    async with running(settings) as stack:
        await asyncio.to_thread(start.wait)
        ports = asyncio.gather(*(_create(stack, "port", {"network_id": net_id})
                                 for _ in range(PORTS_PER_PROCESS)))
        nets = asyncio.gather(*(_create(stack, "network", {})
                                for _ in range(NETWORKS_PER_PROCESS)))
        made_ports, made_nets = await asyncio.gather(ports, nets)
    return {"ips": [p["fixed_ips"][0]["ip_address"] for p in made_ports],
            "macs": [p["mac_address"] for p in made_ports],
            "segments": [n["provider:segmentation_id"] for n in made_nets]}


def _process_main(settings: Settings, net_id: str, start: Any, out: Any) -> None:
    try:
        out.put(("ok", asyncio.run(_one_process(settings, net_id, start))))
    except BaseException as exc:  # reported to the test, which fails on it
        start.abort()
        out.put(("error", repr(exc)))


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "mysql"])
def shared_url(request: pytest.FixtureRequest,
               unavailable: Callable[[str, object], NoReturn]) -> Iterator[str]:
    """A fresh database on the shared server, dropped afterwards."""
    name = f"vifwire_mp_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if request.param == "postgresql":
        admin_url, url = ("postgresql+psycopg://root@127.0.0.1:5432/test",
                          f"postgresql+psycopg://root@127.0.0.1:5432/{name}")
    else:
        admin_url, url = MYSQL_ADMIN_URL, f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        admin.dispose()
        unavailable(request.param, exc)  # a failure in CI
    try:
        yield url
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if request.param == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


async def test_four_server_processes_hand_out_nothing_twice(shared_url: str,
                                                            tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, host="server-1", database_url=shared_url,
                        nova_url="http://127.0.0.1:9/v2.1")
    async with running(settings) as stack:  # also migrates the fresh database
        net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()["network"]
        r = await stack.client.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "ip_version": 4, "cidr": "10.1.0.0/24"}})
        assert r.status_code == 201, r.text
    spawn = multiprocessing.get_context("spawn")
    start, out = spawn.Barrier(PROCESSES), spawn.Queue()
    procs = [spawn.Process(target=_process_main, args=(
        settings.with_(run_dir=tmp_path / f"w{i}"), net["id"], start, out))
        for i in range(PROCESSES)]
    for proc in procs:
        proc.start()
    try:
        results = [await asyncio.to_thread(out.get, True, 300) for _ in procs]
    finally:
        for proc in procs:
            await asyncio.to_thread(proc.join, 30)
            if proc.is_alive():
                proc.kill()
    assert [kind for kind, _ in results] == ["ok"] * PROCESSES, results
    merged: dict[str, list[Any]] = {"ips": [], "macs": [], "segments": []}
    for _, made in results:
        for key, values in made.items():
            merged[key] += values
    assert len(merged["ips"]) == PROCESSES * PORTS_PER_PROCESS
    for key, values in merged.items():
        assert len(set(values)) == len(values), f"duplicate {key}"
    # What made it so: the constraints the migrations created on this engine.
    engine = create_engine(shared_url)
    try:
        found = inspect(engine)
        assert "uq_ports_network_mac" in {c["name"] for c in found.get_unique_constraints("ports")}
        assert "uq_networks_segment" in {c["name"] for c in
                                         found.get_unique_constraints("networks")}
        ip_key = found.get_pk_constraint("ip_allocations")["constrained_columns"]
        assert ip_key == ["subnet_id", "ip_address"]
    finally:
        engine.dispose()
