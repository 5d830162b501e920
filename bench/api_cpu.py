"""Stack CPU per port lifecycle through the API, without VMs.

    .venv/bin/python bench/api_cpu.py [--cycles 300] [--concurrency 10]

Starts a private OVS in its own namespace, the embedded stack and a minimal Nova
events endpoint (so the notifier posts as it would in production, instead of
piling events up behind an unreachable Nova), then runs Nova's calls for each
port (create, bind to the host, delete) and reports the stack process's CPU time
per cycle: the server's share of the per-VM budget.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import psutil
from storm import cpu_split

from vifwire.cli import daemon
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import Settings

NETNS = "vwapi-host"
NOVA_PORT = 8776


async def nova_sink(port: int = NOVA_PORT) -> asyncio.Server:
    """Answers each os-server-external-events post as Nova does: every event, code 200."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                break  # the notifier hung up, or the bench is over
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            events = orjson.loads(await reader.readexactly(length))["events"]
            body = orjson.dumps({"events": [{**e, "code": 200} for e in events]})
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


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


async def with_nova(settings: Settings, count: int, concurrency: int) -> None:
    sink = await nova_sink()
    try:
        await cycles(settings, 30, concurrency)  # warm-up
        await cycles(settings, count, concurrency)
    finally:
        sink.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--cprofile", type=Path, default=None, help="dump stack.pstats here")
    args = parser.parse_args()
    settings = Settings(run_dir=Path("/var/run/vifwire-api"), host="api-host", api_port=9898,
                        nova_url=f"http://127.0.0.1:{NOVA_PORT}/v2.1", cprofile_dir=args.cprofile)
    subprocess.run(["ip", "netns", "add", NETNS], check=False, capture_output=True)
    runtime = OvsRuntime(settings.ovs, netns=NETNS)
    runtime.destroy()
    runtime.start()
    try:
        daemon.start(settings)
        asyncio.run(with_nova(settings, args.cycles, args.concurrency))
    finally:
        daemon.stop(settings)
        runtime.destroy()
        subprocess.run(["ip", "netns", "del", NETNS], check=False, capture_output=True)


if __name__ == "__main__":
    main()
