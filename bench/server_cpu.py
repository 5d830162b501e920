"""Server CPU per operation, in process: the app called as ASGI, no sockets, no agent.

    .venv/bin/python bench/server_cpu.py [--ports 100] [--rounds 5] [--database URL]

Builds the server app (SQLite in a temporary directory unless --database names
another), registers a live agent, then for `--ports` ports at a time runs Nova's
calls one after another as ASGI requests (create with a compute owner, bind to the
host), the agent's ports_up reports (one per port, as the agent mostly sends
them in a storm), and the delete, and reports CPU time (time.process_time) per port
for each. The HTTP
server (uvicorn) is not in these numbers: bench/storm.py measures the whole stack.
Repeats `--rounds` times and reports the median and the minimum per operation (this
machine's neighbours make single rounds noisy; the minimum is the steadiest for A/B).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from vifwire.app import create_app
from vifwire.bus.local import LocalBus
from vifwire.profile.sql import install_sql_probe
from vifwire.server.agents import OVS_AGENT_TYPE
from vifwire.settings import Settings
from vifwire.trace import Tracer

HOST = "bench-host"


class AsgiClient:
    """Calls an ASGI app the way uvicorn would, one request at a time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = b"" if body is None else orjson.dumps(body)
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "server": ("127.0.0.1", 9696),
                 "client": ("127.0.0.1", 40000),
                 "headers": [(b"host", b"127.0.0.1:9696"),
                             (b"content-type", b"application/json"),
                             (b"content-length", str(len(raw)).encode())]}
        sent = False
        status, chunks = 0, []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        data = b"".join(chunks)
        return status, orjson.loads(data) if data else None


async def run(database_url: str, ports: int, rounds: int, probe: bool,
              **overrides: Any) -> dict[str, tuple[float, float]]:
    """Median and minimum ms of CPU per port for each operation; `overrides` are
    Settings fields (the db_* switches, for bench/db_ab.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(run_dir=Path(tmp), host=HOST, database_url=database_url,
                            nova_url="http://127.0.0.1:9/v2.1").with_(**overrides)
        bus = LocalBus()
        await bus.start()
        app = create_app(settings, bus, Tracer("server", None))
        async with app.router.lifespan_context(app):
            services = app.state.services
            sql_probe = install_sql_probe(services.context.engine) if probe else None
            # The notifier would post to Nova; this measures the server alone.
            await services.notifier.stop()
            services.context.wake_notifier = lambda: None
            await services.agents.report({"host": HOST, "agent_type": OVS_AGENT_TYPE,
                                    "binary": "vifwire-agent", "topic": "agent",
                                    "configurations": {}, "start_flag": True})
            client = AsgiClient(app)
            _, net = await client.request("POST", "/v2.0/networks",
                                           {"network": {"name": "bench"}})
            net_id = net["network"]["id"]
            await client.request("POST", "/v2.0/subnets", {"subnet": {
                "network_id": net_id, "cidr": "10.0.0.0/24", "ip_version": 4}})
            samples: dict[str, list[float]] = {}
            for _ in range(rounds + 1):  # the first round warms caches and is dropped
                for name, ms in (await one_round(client, services, net_id, ports)).items():
                    samples.setdefault(name, []).append(ms)
            if sql_probe is not None:
                _print_sql(sql_probe.snapshot(), (rounds + 1) * ports)
        await bus.stop()
    return {name: (statistics.median(values[1:]), min(values[1:]))
            for name, values in samples.items()}


def _print_sql(snap: dict[str, Any], lifecycles: int) -> None:
    """What the stack's SQL probe says of the same run (every round, warm-up too)."""
    n = snap["statements"] or 1
    print(f"sql probe: {snap['statements'] / lifecycles:.1f} statements per port lifecycle, "
          f"build {snap['build_s'] * 1e6 / n:.1f} us ({snap['clocks']['build_s']}), "
          f"execute {snap['execute_s'] * 1e6 / n:.1f} us wall / "
          f"{snap['execute_cpu_s'] * 1e6 / n:.1f} us CPU per statement; cache {snap['cache']}")


async def one_round(client: AsgiClient, services: Any, net_id: str,
                    count: int) -> dict[str, float]:
    out: dict[str, float] = {}
    ids: list[str] = []

    async def timed(name: str, calls: Any) -> None:
        t0 = time.process_time()
        await calls()
        out[name] = (time.process_time() - t0) * 1000 / count

    async def create() -> None:
        for i in range(count):
            status, body = await client.request("POST", "/v2.0/ports", {"port": {
                "network_id": net_id, "device_id": f"vm-{i}", "device_owner": "compute:nova"}})
            assert status == 201, body
            ids.append(body["port"]["id"])

    async def bind() -> None:
        for port_id in ids:
            status, body = await client.request("PUT", f"/v2.0/ports/{port_id}", {
                "port": {"binding:host_id": HOST}})
            assert status == 200 and body["port"]["binding:vif_type"] == "ovs", body

    async def up() -> None:
        # One report per port, as the agent sends them when VIFs arrive one by one.
        for port_id in ids:
            assert await services.endpoint.ports_up(HOST, [port_id]) == [port_id]

    async def delete() -> None:
        for port_id in ids:
            status, body = await client.request("DELETE", f"/v2.0/ports/{port_id}")
            assert status == 204, body

    await timed("create", create)
    await timed("bind", bind)
    await timed("ports_up", up)
    await timed("delete", delete)
    out["create+bind+up"] = out["create"] + out["bind"] + out["ports_up"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--database", default="", help="SQLAlchemy URL (default: SQLite)")
    parser.add_argument("--no-sql-probe", action="store_true",
                        help="leave out the SQL probe the stack always installs")
    args = parser.parse_args()
    result = asyncio.run(run(args.database, args.ports, args.rounds, not args.no_sql_probe))
    for name, (median, least) in result.items():
        print(f"{name:16s} median {median:6.3f}  min {least:6.3f} ms CPU per port")


if __name__ == "__main__":
    main()
