"""Two server instances (own engine, own event loop, own thread) allocating from one
subnet at once, as several server processes would: no address is handed out twice."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from vifwire.settings import Settings

from .helpers import running


async def _create_ports(settings: Settings, net_id: str, count: int,
                        start: threading.Barrier) -> list[dict[str, Any]]:
    async with running(settings) as stack:
        await asyncio.to_thread(start.wait)

        async def one() -> dict[str, Any]:
            r = await stack.client.post("/v2.0/ports", json={"port": {"network_id": net_id}})
            assert r.status_code == 201, r.text
            return r.json()["port"]

        return list(await asyncio.gather(*(one() for _ in range(count))))


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
