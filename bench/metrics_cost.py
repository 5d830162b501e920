"""What the Prometheus hooks add to the hot path, per request and per stage mark.

    .venv/bin/python bench/metrics_cost.py [--requests 20000] [--rounds 5]

Drives `MetricsApp` around a do-nothing ASGI app with PUT /v2.0/ports/<uuid>
(a new id every request, as a storm makes them) and `MetricsTracer` against the
plain `Tracer` with SEEN/WIRED pairs, in this process (no multiprocess
directory: a worker's files add an mmap write per observe). Prints the median
of `--rounds` and writes bench/results/metrics-cost-<UTC time>.json. A VM's
lifecycle costs the server about 6 requests and 4 marks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from vifwire.metrics import MetricsApp, MetricsTracer, renderer
from vifwire.trace import Stage, Tracer

RESULTS = Path(__file__).parent / "results"


async def _noop(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b""})


async def _sink(message: Any) -> None:
    return None


def per_request_us(app: Any, scopes: list[dict[str, Any]]) -> float:
    async def run() -> float:
        started = time.perf_counter()
        for scope in scopes:
            await app(scope, None, _sink)
        return (time.perf_counter() - started) / len(scopes) * 1e6

    return asyncio.run(run())


def per_mark_us(tracer: Tracer, count: int) -> float:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    started = time.perf_counter()
    for port_id in ids:
        tracer.mark(Stage.SEEN, port_id)
        tracer.mark(Stage.WIRED, port_id)
    return (time.perf_counter() - started) / (2 * count) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    scopes = [{"type": "http", "method": "PUT", "path": f"/v2.0/ports/{uuid.uuid4()}"}
              for _ in range(args.requests)]
    wrapped = MetricsApp(_noop, renderer())
    request, mark = [], []
    for _ in range(args.rounds):
        request.append(per_request_us(wrapped, scopes) - per_request_us(_noop, scopes))
        mark.append(per_mark_us(MetricsTracer("bench"), args.requests)
                    - per_mark_us(Tracer("bench"), args.requests))
    result = {"request_us": statistics.median(request), "mark_us": statistics.median(mark),
              "rounds": {"request_us": request, "mark_us": mark},
              "per_vm_us": 6 * statistics.median(request) + 4 * statistics.median(mark),
              "requests": args.requests, "t": time.time()}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"metrics-cost-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"MetricsApp adds {result['request_us']:.1f} us per request, MetricsTracer "
          f"{result['mark_us']:.1f} us per mark: ~{result['per_vm_us']:.0f} us per VM "
          f"(median of {args.rounds}) -> {out}")


if __name__ == "__main__":
    main()
