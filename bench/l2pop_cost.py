"""What l2population adds to the server's work per port going ACTIVE.

    .venv/bin/python bench/l2pop_cost.py [--ports 1000] [--hosts 4]

The server's services on SQLite and the in-process bus, agents as recorders
(no OVS). One vxlan network, `--ports` ports bound round-robin to `--hosts`
hosts. Each port is reported up alone (as the agent mostly does in a storm),
and the server's CPU per report is measured three ways:
  - `set_status` alone (what ports_up cost before l2pop),
  - the full `ports_up` with no agent reporting a tunnel address (one host, as
    the embedded default: l2pop reads the agents table and stops),
  - the full `ports_up` with every host tunnelling (casts to the other hosts).
Writes bench/results/l2pop-<UTC time>.json and prints each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vifwire.bus.base import SERVER_TOPIC, agent_topic
from vifwire.bus.local import LocalBus
from vifwire.server.services import Services, running
from vifwire.settings import Settings
from vifwire.trace import Tracer

RESULTS = Path(__file__).parent / "results"


class Sink:
    def __init__(self) -> None:
        self.casts = 0

    async def port_bound(self, port: Any) -> None:
        return None

    async def fdb_add(self, entries: list[Any]) -> None:
        self.casts += 1

    async def fdb_remove(self, entries: list[Any]) -> None:
        self.casts += 1


async def register(bus: LocalBus, host: str, tunnel_ip: str | None) -> None:
    configurations: dict[str, Any] = {"tunnel_types": ["vxlan"]}
    if tunnel_ip:
        configurations["tunneling_ip"] = tunnel_ip
    await bus.call(SERVER_TOPIC, "report_state", agent={
        "host": host, "agent_type": "Open vSwitch agent", "binary": "neutron-openvswitch-agent",
        "topic": "N/A", "configurations": configurations, "start_flag": True})


async def make_ports(services: Services, hosts: list[str], count: int) -> list[tuple[str, str]]:
    network = (await services.networks.create([{"project_id": "p", "name": "bench"}]))[0]
    await services.subnets.create([{"project_id": "p", "network_id": network["id"],
                                    "cidr": "10.0.0.0/16", "ip_version": 4}])
    bodies = [{"project_id": "p", "network_id": network["id"], "device_owner": "compute:nova",
               "binding:host_id": hosts[i % len(hosts)]} for i in range(count)]
    made = []
    for start in range(0, count, 100):
        made += await services.ports.create(bodies[start:start + 100])
    return [(p["binding:host_id"], p["id"]) for p in made]


async def measure(tunnelled: bool, ports: int, host_count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        bus = LocalBus()
        settings = Settings(run_dir=Path(tmp), host="server", nova_url="http://127.0.0.1:9/v2.1",
                            quota_port=-1)  # --ports may pass the default 500
        async with running(settings, bus, Tracer("server", None)) as services:
            hosts = [f"host{i}" for i in range(host_count)]
            sinks = {h: Sink() for h in hosts}
            for i, host in enumerate(hosts):
                await bus.serve(agent_topic(host), sinks[host])
                await register(bus, host, f"198.18.0.{i + 1}" if tunnelled else None)
            made = await make_ports(services, hosts, ports)
            half = len(made) // 2
            # The first half: set_status alone; the second: the whole ports_up.
            start = time.process_time()
            for host, port_id in made[:half]:
                await services.ports.set_status(host, [port_id], "ACTIVE")
            plain = (time.process_time() - start) / half
            start = time.process_time()
            for host, port_id in made[half:]:
                await services.endpoint.ports_up(host, [port_id])
            await asyncio.sleep(0)
            full = (time.process_time() - start) / (len(made) - half)
            casts = sum(s.casts for s in sinks.values())
    return {"set_status_ms": plain * 1000, "ports_up_ms": full * 1000,
            "l2pop_ms": (full - plain) * 1000, "casts": casts}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=4)
    args = parser.parse_args()
    result: dict[str, Any] = {"when": datetime.now(UTC).isoformat(), "ports": args.ports,
                              "hosts": args.hosts, "python": sys.version.split()[0],
                              "machine": platform.node()}
    result["single_host"] = asyncio.run(measure(False, args.ports, args.hosts))
    result["tunnelled"] = asyncio.run(measure(True, args.ports, args.hosts))
    for case in ("single_host", "tunnelled"):
        figures = result[case]
        print(f"{case:12} set_status {figures['set_status_ms']:.3f} ms, ports_up "
              f"{figures['ports_up_ms']:.3f} ms, l2pop adds {figures['l2pop_ms']:.3f} ms "
              f"per port ({figures['casts']} casts)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"l2pop-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
