"""Bus round trips over the local RabbitMQ: what one cast and one call cost.

Two AmqpBus instances (two connections, as a server worker and an agent would
have) in this process, on one uvloop loop; the in-process LocalBus for scale.
Measured, one message at a time so each figure is a latency, not a queueing time:
- call: agent -> server `ports_up`-shaped call, request to reply;
- cast: server -> agent `port_bound`-shaped cast with a PortDetails body, from
  `cast()` to the handler running (and `cast()`'s own return: the confirm);
- burst: N casts at once to one agent, until the last handler ran (throughput);
- CPU per message (one call or one cast): this process's CPU (both ends: client
  and endpoint) over the sequential runs, and the broker's (beam.smp, read from /proc; the broker is
  shared, so other traffic on it counts too: take it as an upper bound).

usage: python bench/bus_rtt.py [--url amqp://guest:guest@127.0.0.1:5672/] [-n 2000]
Writes bench/results/bus-rtt-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from vifwire.bus.amqp import AmqpBus
from vifwire.bus.base import Bus
from vifwire.bus.local import LocalBus

RESULTS = Path(__file__).parent / "results"
PORT = {"port_id": "6f1b3c2e-8f1d-4c54-9a8e-3f0e2b7d9a11", "mac_address": "fa:16:3e:12:34:56",
        "network_id": "0b9e5a8c-2a51-4d3e-b6a1-5c2f7e9d1b33", "network_type": "vxlan",
        "segmentation_id": 1001, "physical_network": None, "mtu": 1450,
        "admin_state_up": True, "fixed_ips": [{"subnet_id": "9c1d", "ip_address": "10.0.0.5"}],
        "device_owner": "compute:nova", "device_id": "vm-1", "host": "h1", "status": "DOWN"}


class Server:
    async def ports_up(self, host: str, port_ids: list[str]) -> list[str]:
        return port_ids


class Agent:
    def __init__(self) -> None:
        self.arrived: asyncio.Event = asyncio.Event()
        self.count = 0
        self.want = 1

    async def port_bound(self, port: dict[str, Any]) -> None:
        self.count += 1
        if self.count >= self.want:
            self.arrived.set()


def _ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"p50_ms": round(statistics.median(values) * 1e3, 3),
            "p99_ms": round(values[int(len(values) * 0.99) - 1] * 1e3, 3),
            "max_ms": round(values[-1] * 1e3, 3)}


def _broker_cpu() -> float | None:
    """CPU seconds of the beam.smp listening on 5672, or None if it cannot be read."""
    out = subprocess.run(["ss", "-ltnpH", "sport = :5672"], capture_output=True, text=True).stdout
    if "pid=" not in out:
        return None
    pid = int(out.split("pid=")[1].split(",")[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(server_bus: Bus, agent_bus: Bus, n: int) -> dict[str, Any]:
    agent = Agent()
    await server_bus.serve("server", Server())
    await agent_bus.serve("agent.h1", agent)
    for _ in range(50):  # warm up: connections, queue declarations, code paths
        await agent_bus.call("server", "ports_up", host="h1", port_ids=["p"])
    cpu0, broker0 = time.process_time(), _broker_cpu()
    calls = []
    for _ in range(n):
        t = time.perf_counter()
        await agent_bus.call("server", "ports_up", host="h1", port_ids=[PORT["port_id"]])
        calls.append(time.perf_counter() - t)
    casts, confirms = [], []
    for _ in range(n):
        agent.arrived.clear()
        agent.want = agent.count + 1
        t = time.perf_counter()
        await server_bus.cast("agent.h1", "port_bound", port=PORT)
        confirms.append(time.perf_counter() - t)
        await agent.arrived.wait()
        casts.append(time.perf_counter() - t)
    cpu, broker1 = time.process_time() - cpu0, _broker_cpu()
    agent.arrived.clear()
    agent.want = agent.count + n
    t = time.perf_counter()
    await asyncio.gather(*(server_bus.cast("agent.h1", "port_bound", port=PORT)
                           for _ in range(n)))
    await agent.arrived.wait()
    burst = time.perf_counter() - t
    result: dict[str, Any] = {
        "call": _ms(calls), "cast_delivered": _ms(casts), "cast_returned": _ms(confirms),
        "cpu_us_per_message_both_ends": round(cpu / (2 * n) * 1e6, 1),
        "burst": {"casts": n, "seconds": round(burst, 3), "per_second": round(n / burst)}}
    if broker0 is not None and broker1 is not None and isinstance(server_bus, AmqpBus):
        result["broker_cpu_us_per_message"] = round((broker1 - broker0) / (2 * n) * 1e6, 1)
    return result


async def run(url: str, n: int) -> dict[str, Any]:
    local = LocalBus()
    results: dict[str, Any] = {"local": await measure(local, local, n)}
    await local.stop()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    server_bus, agent_bus = AmqpBus(url, prefix=prefix), AmqpBus(url, prefix=prefix)
    await server_bus.start()
    await agent_bus.start()
    try:
        results["amqp"] = await measure(server_bus, agent_bus, n)
    finally:
        await agent_bus.stop()
        await server_bus.stop()
        await _delete_queue(url, f"{prefix}.server")  # durable: it outlives the workers
    return results


async def _delete_queue(url: str, name: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results = runner.run(run(args.url, args.n))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # CPU figures swell on a busy machine (shared cores, caches): keep the load with them.
    record = {"bench": "bus_rtt", "utc": stamp, "messages": args.n,
              "loadavg_1m": round(os.getloadavg()[0], 2), **results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bus-rtt-{stamp}.json").write_text(json.dumps(record, indent=2) + "\n")
    for bus in ("local", "amqp"):
        r = results[bus]
        print(f"{bus:5}  call p50 {r['call']['p50_ms']} ms p99 {r['call']['p99_ms']} ms | "
              f"cast delivered p50 {r['cast_delivered']['p50_ms']} ms "
              f"p99 {r['cast_delivered']['p99_ms']} ms (returned p50 "
              f"{r['cast_returned']['p50_ms']} ms) | CPU {r['cpu_us_per_message_both_ends']} "
              f"us/msg both ends | burst {r['burst']['per_second']} casts/s"
              + (f" | broker {r['broker_cpu_us_per_message']} us/msg"
                 if "broker_cpu_us_per_message" in r else ""))
    print(f"load average {record['loadavg_1m']}; results: bench/results/bus-rtt-{stamp}.json")


if __name__ == "__main__":
    main()
