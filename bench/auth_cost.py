"""What authentication and policy cost per request (issue 11): noauth vs keystone.

    .venv/bin/python bench/auth_cost.py [--ports 10000] [--requests 300]

In-process (`create_app` behind httpx's ASGI transport, SQLite in a temporary
directory), so the numbers are the app's CPU, not HTTP parsing. The keystone apps'
token cache is seeded with the tokens used (a known token is the steady state:
keystonemiddleware and vifwire both cache for token_cache_time), so no Keystone is
needed and the Keystone round trip of a token's first use is not in the figures.

Measured, CPU ms per request (process time):
- `GET /v2.0/networks/<id>` and `GET /v2.0/ports/<id>`: noauth (admin), a keystone
  admin, a keystone member owning them (policy checks, the port's network read);
- `GET /v2.0/ports` over `--ports` ports: noauth, a member owning all of them (the
  per-item attribute filter), a member owning 100 of them (the SQL scope).
Results: bench/results/auth-cost-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from vifwire.app import create_app
from vifwire.bus.local import LocalBus
from vifwire.keystone import TokenInfo
from vifwire.settings import KeystoneCredentials, Settings
from vifwire.trace import NullTracer

RESULTS = Path(__file__).parent / "results"
OWNER, STRANGER = "a" * 32, "b" * 32
TOKENS = {"admin": TokenInfo("u-admin", "c" * 32, frozenset({"admin"}), 0.0),
          "owner": TokenInfo("u-owner", OWNER, frozenset({"member"}), 0.0),
          "stranger": TokenInfo("u-stranger", STRANGER, frozenset({"member"}), 0.0)}


async def _per_request_ms(call: Callable[[], Awaitable[httpx.Response]], n: int) -> float:
    (await call()).raise_for_status()  # warm
    t0 = time.process_time()
    for _ in range(n):
        (await call()).raise_for_status()
    return round((time.process_time() - t0) * 1000 / n, 3)


async def _fill(client: httpx.AsyncClient, ports: int) -> dict[str, str]:
    """One network of OWNER's with `ports` ports: all OWNER's but 100 of STRANGER's."""
    as_owner = {"X-Project-Id": OWNER}
    net = (await client.post("/v2.0/networks", json={"network": {}}, headers=as_owner)
           ).json()["network"]
    await client.post("/v2.0/subnets", headers=as_owner, json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/16"}})
    for start in range(0, ports, 500):
        n = min(500, ports - start)
        body = {"ports": [{"network_id": net["id"], "name": f"p{start + i}",
                           "project_id": STRANGER if start + i < 100 else OWNER}
                          for i in range(n)]}
        (await client.post("/v2.0/ports", json=body, headers=as_owner)).raise_for_status()
    port = (await client.get("/v2.0/ports", params={"name": "p200"})).json()["ports"][0]
    return {"network": net["id"], "port": port["id"]}


async def run(ports: int, requests: int, base: Path) -> dict[str, Any]:
    url = f"sqlite:///{base / 'auth.sqlite'}"
    noauth = Settings(run_dir=base, database_url=url, nova_url="http://127.0.0.1:9/v2.1")
    keystone = noauth.with_(auth_strategy="keystone", keystone_authtoken=KeystoneCredentials(
        "http://127.0.0.1:9/v3", "vifwire", "unused"))
    out: dict[str, Any] = {}
    for mode, settings in (("noauth", noauth), ("keystone", keystone)):
        app = create_app(settings, LocalBus(), NullTracer())
        if app.gate.validator is not None:
            for token, info in TOKENS.items():
                seeded = TokenInfo(info.user_id, info.project_id, info.roles, time.time() + 3600)
                app.gate.validator._cache[token] = (time.time() + 3600, seeded)
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=transport, base_url="http://localhost", timeout=600) as client:
            if mode == "noauth":
                ids = await _fill(client, ports)
            callers = {"noauth": {}} if mode == "noauth" else {
                who: {"X-Auth-Token": who} for who in ("admin", "owner", "stranger")}
            for who, headers in callers.items():
                label = who if mode == "noauth" else f"keystone-{who}"
                row: dict[str, Any] = {}
                if who != "stranger":
                    for name, path in (("show_network", f"/v2.0/networks/{ids['network']}"),
                                       ("show_port", f"/v2.0/ports/{ids['port']}")):
                        row[name] = await _per_request_ms(
                            lambda p=path, h=headers: client.get(p, headers=h), requests)
                listed = await client.get("/v2.0/ports", headers=headers)
                row["list_ports_returned"] = len(listed.json()["ports"])
                row["list_ports"] = await _per_request_ms(
                    lambda h=headers: client.get("/v2.0/ports", headers=h), 5)
                out[label] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vw-auth-bench-") as tmp:
        figures = asyncio.run(run(args.ports, args.requests, Path(tmp)))
    result = {"bench": "auth_cost", "at": datetime.now(UTC).isoformat(),
              "python": platform.python_version(), "ports": args.ports,
              "requests": args.requests, "cpu_ms_per_request": figures,
              "note": "in-process, SQLite, cached tokens; shared 2-core machine: indicative"}
    write_result("auth-cost", result)


def write_result(name: str, result: dict[str, Any]) -> None:
    """bench/results/<name>-<UTC time>.json, and the figures on stdout."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
