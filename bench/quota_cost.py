"""What the quota check adds to a port create (issue 11 item 3).

    .venv/bin/python bench/quota_cost.py [--ports 2000] [--rounds 200] [--database-url URL]

The server's services on SQLite (or the given database) and the in-process bus,
no agent. One network; the project holds `--ports` ports before the figures are
taken (the count the check makes grows with them). Measured, each `--rounds`
times, as the process's CPU and wall time (medians):
  - `quotas.check` for one more port, alone in its own transaction, unlimited (-1)
    and limited just above the usage (the index walk's worst case);
  - A/B, interleaved: a whole port create (`PortService.create`, allocation
    included; the limit just above the usage) with the check, and with the check
    replaced by a no-op. The check's share is (with - without) / without. Writes
bench/results/quota-cost-<UTC time>.json and prints each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from vifwire.bus.local import LocalBus
from vifwire.server import quotas
from vifwire.server._db import transaction
from vifwire.server.services import Services, running
from vifwire.settings import Settings
from vifwire.trace import NullTracer

RESULTS = Path(__file__).parent / "results"
PROJECT = "c" * 32


def _median_us(values: list[float]) -> float:
    return round(statistics.median(values) * 1e6, 1)


def _timed(work: Callable[[], Any], rounds: int) -> dict[str, float]:
    cpu, wall = [], []
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        work()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu_us": _median_us(cpu), "wall_us": _median_us(wall)}


def _skip_check(conn: Connection, ctx: Any, project_id: str, resource: str,
                adding: int = 1) -> None:
    return None


async def measure(services: Services, ports: int, rounds: int) -> dict[str, Any]:
    ctx = services.context
    net = (await services.networks.create([{"project_id": PROJECT}]))[0]
    await services.subnets.create([{"project_id": PROJECT, "network_id": net["id"],
                                    "ip_version": 4, "cidr": "10.0.0.0/16"}])
    body = {"project_id": PROJECT, "network_id": net["id"], "port_security_enabled": False}
    for start in range(0, ports, 200):
        await services.ports.create([dict(body) for _ in range(min(200, ports - start))])

    def check(conn: Connection) -> None:
        quotas.check(conn, ctx, PROJECT, "port")

    result: dict[str, Any] = {
        "check_alone_unlimited": _timed(lambda: transaction(ctx.engine, check), rounds)}
    # Limited just above the usage: the index walk goes all the way (the worst case).
    await services.quotas.update(PROJECT, {"port": ports + 1 + 50})
    result["check_alone_limited"] = _timed(lambda: transaction(ctx.engine, check), rounds)
    # A/B, interleaved: whole creates (and deletes) with the check and with a no-op.
    real = quotas.check
    samples: dict[str, dict[str, list[float]]] = {
        name: {"cpu": [], "wall": []} for name in ("with_check", "without_check")}
    for n in range(2 * rounds):
        name = "with_check" if n % 2 == 0 else "without_check"
        quotas.check = real if name == "with_check" else _skip_check  # type: ignore[assignment]
        c0, w0 = time.process_time(), time.perf_counter()
        made = await services.ports.create([dict(body)])
        samples[name]["cpu"].append(time.process_time() - c0)
        samples[name]["wall"].append(time.perf_counter() - w0)
        await services.ports.delete(made[0]["id"])
    quotas.check = real  # type: ignore[assignment]
    for name, found in samples.items():
        result[f"create_{name}"] = {"cpu_us": _median_us(found["cpu"]),
                                    "wall_us": _median_us(found["wall"])}
    with_, without = result["create_with_check"], result["create_without_check"]
    result["check_share_of_create_cpu"] = round(
        (with_["cpu_us"] - without["cpu_us"]) / without["cpu_us"], 3)
    return result


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/quota.sqlite"
        settings = Settings(run_dir=Path(tmp), host="server", database_url=url,
                            nova_url="http://127.0.0.1:9/v2.1", quota_port=-1)
        async with running(settings, LocalBus(), NullTracer()) as services:
            figures = await measure(services, args.ports, args.rounds)
    result = {"bench": "quota_cost", "database": url.split(":")[0], "ports": args.ports,
              "rounds": args.rounds, "python": platform.python_version(),
              "note": "shared 2-core machine, other benches running: indicative",
              **figures}
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"quota-cost-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--database-url", default="")
    asyncio.run(main(parser.parse_args()))
