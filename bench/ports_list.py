"""`GET /v2.0/ports` with 10,000 ports on PostgreSQL or SQLite, through the API (target <= 300 ms).

    .venv/bin/python bench/ports_list.py [--ports 10000] [--requests 5] [--workers 1]
                                         [--database postgresql|sqlite] [--profile]

Starts `vifwire server --workers N` (local bus: no agent is needed to list) on a
PostgreSQL database of its own in the shared server (dropped after), creates the
ports through the API in bulk POSTs of 500 (unbound: no agent involved), then
times `--requests` sequential GETs of each shape: the whole collection,
`fields=id`, and `limit=1000` (the first page), over one kept-alive connection,
reporting p50/max and the response size. Each shape is also timed with a tag
filter that excludes nothing (`not-tags=...`, shapes marked "generic"): tag
filters are not pushed down, so that is the generic path (every port rendered,
then paged in memory: server/port_pages.py's A/B, in the same run). With
`--database sqlite` the server runs on a SQLite file of the run's own (one worker).
With `--profile`, the same listings are
then profiled with cProfile in this process over the same database (`create_app`
behind httpx's ASGI transport: no HTTP server, so the socket and HTTP parsing are
not in it); the top functions by cumulative time are printed and saved.
Results: bench/results/ports-list-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import platform
import pstats
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from dist_rig import Rig, free_port, make_network
from dist_storm import loadavg
from storm import calibration_s

RESULTS = Path(__file__).parent / "results"
TARGET_MS = 300.0
SHAPES: dict[str, list[tuple[str, str]]] = {
    "all": [], "fields=id": [("fields", "id")], "limit=1000": [("limit", "1000")]}
GENERIC = ("not-tags", "vw-bench-never-set")  # matches every port; not pushed down
SHAPES.update({f"{shape} generic": [*params, GENERIC] for shape, params in list(SHAPES.items())})
BULK = 500


class SqliteRig(Rig):
    """The rig on a SQLite file in its base directory instead of a PostgreSQL database."""

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.base / 'ports.sqlite'}"

    def create_database(self) -> None:
        pass  # the file is made by `vifwire db upgrade`


def fill(api_url: str, network_id: str, count: int) -> list[float]:
    """Create `count` ports in bulk POSTs; the seconds each POST took."""
    took = []
    with httpx.Client(base_url=api_url, timeout=300) as client:
        for start in range(0, count, BULK):
            n = min(BULK, count - start)
            body = {"ports": [{"network_id": network_id, "name": f"list-{start + i}",
                               "device_owner": "compute:nova"} for i in range(n)]}
            t0 = time.monotonic()
            client.post("/v2.0/ports", json=body).raise_for_status()
            took.append(round(time.monotonic() - t0, 2))
    return took


def existing_ports(api_url: str) -> int:
    with httpx.Client(base_url=api_url, timeout=120) as client:
        return len(client.get("/v2.0/ports", params=[("fields", "id")]).json()["ports"])


def time_gets(api_url: str, requests: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=api_url, timeout=120) as client:
        client.get("/v2.0/ports", params=[("limit", "1")]).raise_for_status()  # connection up
        for shape, params in SHAPES.items():
            times, size, count = [], 0, 0
            for _ in range(requests):
                t0 = time.perf_counter()
                response = client.get("/v2.0/ports", params=params)
                times.append((time.perf_counter() - t0) * 1000)
                response.raise_for_status()
                size, count = len(response.content), len(response.json()["ports"])
            out[shape] = {"ms": [round(t, 1) for t in times],
                          "p50_ms": round(statistics.median(times), 1),
                          "max_ms": round(max(times), 1), "ports_returned": count,
                          "bytes": size, "calibration_s": round(calibration_s(), 4),
                          "loadavg": loadavg()}
    return out


def profile_in_process(database_url: str, base: Path) -> dict[str, str]:
    """The same three listings under cProfile, in this process, over the same database."""
    from vifwire.app import create_app
    from vifwire.bus.local import LocalBus
    from vifwire.settings import Settings
    from vifwire.trace import NullTracer

    settings = Settings(run_dir=base / "profile", database_url=database_url, api_port=free_port(),
                        nova_url="http://127.0.0.1:9/v2.1",
                        quota_port=-1)  # one project holds them all: past the default 500
    app = create_app(settings, LocalBus(), NullTracer())
    out: dict[str, str] = {}

    async def go() -> None:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            await client.get("/v2.0/ports", params=[("limit", "1")])
            for shape, params in SHAPES.items():
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(3):
                    (await client.get("/v2.0/ports", params=params)).raise_for_status()
                prof.disable()
                text = io.StringIO()
                pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(30)
                out[shape] = text.getvalue()

    asyncio.run(go())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--keep-db", action="store_true",
                        help="leave the filled database (its name is printed) for --reuse-db")
    parser.add_argument("--reuse-db", metavar="NAME",
                        help="a database a --keep-db run left: no fill; dropped after "
                             "unless --keep-db")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="vwportslist-"))
    rig = SqliteRig(base) if args.database == "sqlite" else Rig(base)
    profiles: dict[str, str] = {}
    took: list[float] = []
    try:
        if args.reuse_db:
            rig.db_name = args.reuse_db
        else:
            rig.create_database()
        rig.start_server(args.workers, "http://127.0.0.1:9/v2.1")
        if args.reuse_db:
            print(f"reusing database {rig.db_name}: {existing_ports(rig.api_url)} ports")
        else:
            network_id = make_network(rig.api_url, "list", "10.16.0.0/16")
            took = fill(rig.api_url, network_id, args.ports)
            print(f"created {args.ports} ports through the API in {sum(took):.1f} s, bulk POSTs "
                  f"of {BULK}: first {took[0]} s, last {took[-1]} s")
        results = time_gets(rig.api_url, args.requests)
        if args.profile:
            profiles = profile_in_process(rig.database_url, base)
    finally:
        if args.keep_db:
            print(f"kept database {rig.db_name} (drop it: DROP DATABASE \"{rig.db_name}\")")
            rig.db_name = None
        rig.close()
    for shape, r in results.items():
        verdict = "ok" if r["max_ms"] <= TARGET_MS else "MISSED"
        print(f"GET /v2.0/ports {shape:<19} ({r['ports_returned']} ports, {r['bytes']} bytes): "
              f"p50 {r['p50_ms']} ms, max {r['max_ms']} ms over {len(r['ms'])} (target "
              f"{TARGET_MS:g}: {verdict}); load {r['loadavg']}, calibration "
              f"{r['calibration_s']:.3f} s")
    for shape, text in profiles.items():
        print(f"--- profile of 3 x GET /v2.0/ports {shape} (in-process) ---")
        print("\n".join(text.splitlines()[:45]))
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": f".venv/bin/python bench/ports_list.py {' '.join(sys.argv[1:])}",
              "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
              "database": "SQLite (own file)" if args.database == "sqlite"
              else "PostgreSQL 127.0.0.1:5432 (own database)", "workers": args.workers,
              "ports": args.ports, "reused_db": bool(args.reuse_db),
              "fill_bulk_post_s": took, "target_ms": TARGET_MS,
              "results": results, "profiles": profiles}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"ports-list-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
