"""A/B of the HTTP speed-ups against the plain library paths (issue 13.2).

    .venv/bin/python bench/http_ab.py [--cycles 300] [--rounds 3]

For each switch in Settings (fast_dispatch, nova_client) the server runs once
with every speed-up on and once with that one switched to the plain path
(FastAPI's router, httpx for Nova), as its
own process: the real app under uvicorn with a SQLite file, and a Nova sink in
this process, so the notifier posts as in production. Each cycle is Nova's
calls for one port without an agent: create (a compute port), update, delete
(which queues network-vif-deleted, one Nova post). The server process's CPU per
cycle is compared; configurations alternate per round and the least of the
rounds counts (the machine is shared: the least is the least disturbed).
Writes bench/results/http_ab-<UTC time>.json and prints the gain per switch.
(A third switch, api/http_protocol's one-write transport, was measured here at
-160 us per cycle, a loss, and removed: bench/results/http_ab-20261201T103027Z.json.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from api_cpu import nova_sink

RESULTS = Path(__file__).parent / "results"
CONFIGS: dict[str, dict[str, Any]] = {
    "all_on": {},
    "fast_dispatch_off": {"fast_dispatch": False},
    "nova_client_httpx": {"nova_client": "httpx"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(spec: str) -> None:
    """Child: the app under uvicorn with the given Settings fields."""
    import uvicorn
    from vifwire.server.app import create_app

    from vifwire.api.http_protocol import server_config
    from vifwire.bus.local import LocalBus
    from vifwire.settings import Settings
    from vifwire.trace import NullTracer

    fields = json.loads(spec)
    run_dir = Path(fields.pop("run_dir"))
    settings = Settings(run_dir=run_dir, host="ab-host",
                        database_url=f"sqlite:///{run_dir / 'ab.sqlite'}", **fields)
    app = create_app(settings, LocalBus(), NullTracer())
    config = server_config(app, "127.0.0.1", settings.api_port)
    import uvloop
    uvloop.run(uvicorn.Server(config).serve())


async def measure(name: str, fields: dict[str, Any], cycles: int, nova_port: int) -> float:
    """Server CPU ms per cycle for one configuration (after a warm-up)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="vw-http-ab-") as run_dir:
        spec = {**fields, "run_dir": run_dir, "api_port": port,
                "nova_url": f"http://127.0.0.1:{nova_port}/v2.1"}
        child = subprocess.Popen([sys.executable, __file__, "--serve", json.dumps(spec)])
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         timeout=60) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        await client.get("/v2.0/networks")
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline or child.poll() is not None:
                            raise RuntimeError(f"{name}: server did not start") from None
                        await asyncio.sleep(0.1)
                net = (await client.post("/v2.0/networks", json={"network": {}})).json()
                net_id = net["network"]["id"]
                await client.post("/v2.0/subnets", json={"subnet": {
                    "network_id": net_id, "cidr": "10.30.0.0/16", "ip_version": 4}})
                proc = psutil.Process(child.pid)

                async def run(count: int) -> float:
                    gate = asyncio.Semaphore(10)

                    async def one(i: int) -> None:
                        async with gate:
                            p = (await client.post("/v2.0/ports", json={"port": {
                                "network_id": net_id, "device_id": f"vm-{i}",
                                "device_owner": "compute:nova"}})).json()["port"]
                            await client.put(f"/v2.0/ports/{p['id']}",
                                             json={"port": {"name": f"p{i}"}})
                            await client.delete(f"/v2.0/ports/{p['id']}")

                    before = sum(proc.cpu_times()[:2])
                    await asyncio.gather(*(one(i) for i in range(count)))
                    return (sum(proc.cpu_times()[:2]) - before) * 1000 / count

                await run(30)
                return await run(cycles)
        finally:
            child.terminate()
            child.wait()


async def main_async(cycles: int, rounds: int) -> dict[str, Any]:
    nova_port = free_port()
    sink = await nova_sink(nova_port)
    runs: dict[str, list[float]] = {name: [] for name in CONFIGS}
    try:
        for _ in range(rounds):
            for name, fields in CONFIGS.items():
                runs[name].append(await measure(name, fields, cycles, nova_port))
                print(f"  {name}: {runs[name][-1]:.3f} ms/cycle", flush=True)
    finally:
        sink.close()
    least = {name: min(values) for name, values in runs.items()}
    gains = {name: least[name] - least["all_on"] for name in CONFIGS if name != "all_on"}
    return {"cycles": cycles, "rounds": rounds, "requests_per_cycle": 3,
            "nova_posts_per_cycle": 1, "server_cpu_ms_per_cycle": runs,
            "least_ms_per_cycle": least, "gain_us_per_cycle": {
                k: round(v * 1000, 1) for k, v in gains.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    result = asyncio.run(main_async(args.cycles, args.rounds))
    result["time"] = datetime.now(UTC).isoformat()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"http_ab-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"least server CPU per cycle (create+update+delete, 1 Nova post): "
          f"all on {result['least_ms_per_cycle']['all_on']:.3f} ms")
    for name, gain in result["gain_us_per_cycle"].items():
        print(f"  {name:22s} costs {gain:+8.1f} us per cycle (the speed-up's gain)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
