"""Stack CPU per port lifecycle through the API, without VMs.

    .venv/bin/python bench/api_cpu.py [--cycles 300] [--concurrency 10]

Starts a private OVS in its own namespace and the embedded stack, then runs
Nova's calls for each port (create, bind to the host, delete) and reports the
stack process's CPU time per cycle: the server's share of the per-VM budget.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import psutil
from storm import cpu_split

from vifwire.cli import daemon
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import Settings

NETNS = "vwapi-host"


async def cycles(settings: Settings, count: int, concurrency: int) -> float:
    async with httpx.AsyncClient(base_url=settings.api_url, timeout=60) as client:
        net = (await client.post("/v2.0/networks", json={"network": {"name": "api"}})).json()
        net_id = net["network"]["id"]
        await client.post("/v2.0/subnets", json={"subnet": {
            "network_id": net_id, "cidr": "10.20.0.0/16", "ip_version": 4}})
        stack = psutil.Process(daemon.stack_pid(settings))
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                port = (await client.post("/v2.0/ports", json={"port": {
                    "network_id": net_id}})).json()["port"]
                await client.put(f"/v2.0/ports/{port['id']}", json={"port": {
                    "device_id": f"vm-{i}", "device_owner": "compute:nova",
                    "binding:host_id": settings.host}})
                await client.delete(f"/v2.0/ports/{port['id']}")

        before = sum(stack.cpu_times()[:2])
        split_before = cpu_split(stack)
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        wall = time.perf_counter() - t0
        cpu = sum(stack.cpu_times()[:2]) - before
        server, agent = (a - b for a, b in zip(cpu_split(stack), split_before, strict=True))
        print(f"{count} cycles in {wall:.2f}s; stack CPU {cpu:.2f}s = "
              f"{cpu * 1000 / count:.2f} ms per create+bind+delete (server "
              f"{server * 1000 / count:.2f} ms, agent {agent * 1000 / count:.2f} ms)")
        return cpu * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--cprofile", type=Path, default=None, help="dump stack.pstats here")
    args = parser.parse_args()
    settings = Settings(run_dir=Path("/var/run/vifwire-api"), host="api-host", api_port=9898,
                        nova_url="http://127.0.0.1:8776/v2.1", cprofile_dir=args.cprofile)
    subprocess.run(["ip", "netns", "add", NETNS], check=False, capture_output=True)
    runtime = OvsRuntime(settings.ovs, netns=NETNS)
    runtime.destroy()
    runtime.start()
    try:
        daemon.start(settings)
        asyncio.run(cycles(settings, 30, args.concurrency))  # warm-up
        asyncio.run(cycles(settings, args.cycles, args.concurrency))
    finally:
        daemon.stop(settings)
        runtime.destroy()
        subprocess.run(["ip", "netns", "del", NETNS], check=False, capture_output=True)


if __name__ == "__main__":
    main()
