"""A/B of the database speed-ups, and of where database work runs.

    .venv/bin/python bench/db_ab.py [--ports 100] [--rounds 3] [--repeats 3] [--hold 0.5]
                                    [--postgres postgresql+psycopg://root@127.0.0.1:5432/test]

On SQLite (a temporary file) and on PostgreSQL (a throwaway database next to
--postgres; "" to leave it out), writes bench/results/db_ab-<UTC time>.json and
prints, per engine:

1. Switches: ms of server CPU per port lifecycle (bench/server_cpu.py: create,
   bind, ports_up, delete, called as ASGI) with everything on, then with one
   switch off at a time: `db_direct_statements` (vifwire.db.fast), `db_held_connections`
   (vifwire.server._db), `db_threads=0` (transactions on the event loop instead
   of the thread pool), and with the SQL probe installed as the stack does. The
   variants run interleaved, `--repeats` times; each figure is the least of
   the repeats' medians (neighbours make this machine noisy). Gain of a
   speed-up = CPU with it off - CPU with it on.
2. Held lock: an outside transaction holds the write lock (SQLite `BEGIN
   IMMEDIATE`, PostgreSQL `LOCK TABLE ports`) for --hold s while a port create
   waits for it; 50 ms in, a GET /v2.0/networks then an agent `get_host_ports`
   call are due. Their latency from when they were due, with the thread pool
   and with transactions on the loop (`db_threads=0`, where they wait too).
3. Async driver: the statements of a port create (network, subnets, used
   addresses, insert port and address, read back) as one transaction, CPU per
   transaction through SQLAlchemy's AsyncEngine (aiosqlite / psycopg async)
   against the same Core statements on the sync driver run by
   `run_transaction` (thread pool) and on the loop. aiosqlite and greenlet
   are not dependencies: without them these rows are left out
   (`.venv/bin/pip install aiosqlite greenlet` to have them).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import bindparam, create_engine, insert, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))
import server_cpu
from vifwire.server.app import create_app

from vifwire.bus.local import LocalBus
from vifwire.db.engine import make_engine, migrate
from vifwire.db.schema import ip_allocations, networks, ports, subnets
from vifwire.server._db import release_connections, run_transaction, transaction
from vifwire.settings import Settings
from vifwire.trace import Tracer

RESULTS = Path(__file__).parent / "results"
VARIANTS: dict[str, dict[str, Any]] = {
    "all on": {},
    "db_direct_statements off": {"db_direct_statements": False},
    "db_held_connections off": {"db_held_connections": False},
    "db_threads=0 (on the loop)": {"db_threads": 0},
}
LIFECYCLE = ("create", "bind", "ports_up", "delete")


async def switches(url: str, ports: int, rounds: int, repeats: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in [*VARIANTS, "sql probe on"]}
    for _ in range(repeats):
        for name in runs:
            overrides = VARIANTS.get(name, {})
            result = await server_cpu.run(url, ports, rounds, name == "sql probe on",
                                          **overrides)
            runs[name].append({op: result[op][0] for op in LIFECYCLE})
    out: dict[str, Any] = {}
    for name, samples in runs.items():
        per_op = {op: min(s[op] for s in samples) for op in LIFECYCLE}
        out[name] = {"ms_per_port": per_op, "lifecycle_ms": round(sum(per_op.values()), 4)}
    base = out["all on"]["lifecycle_ms"]
    for row in out.values():
        row["gain_of_speedup_us"] = round((row["lifecycle_ms"] - base) * 1000, 1)
    return out


async def held_lock(url: str, hold_s: float, threads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(run_dir=Path(tmp), host=server_cpu.HOST, database_url=url,
                            nova_url="http://127.0.0.1:9/v2.1", db_threads=threads)
        bus = LocalBus()
        await bus.start()
        app = create_app(settings, bus, Tracer("server", None))
        async with app.router.lifespan_context(app):
            await app.state.services.notifier.stop()
            client = server_cpu.AsgiClient(app)
            _, net = await client.request("POST", "/v2.0/networks", {"network": {}})
            net_id = net["network"]["id"]
            await client.request("POST", "/v2.0/subnets", {"subnet": {
                "network_id": net_id, "cidr": "10.0.0.0/24", "ip_version": 4}})
            release = _hold(settings.effective_database_url, hold_s)
            try:
                started = time.perf_counter()
                create = asyncio.create_task(client.request("POST", "/v2.0/ports", {
                    "port": {"network_id": net_id}}))
                # The GET and the agent call are due 50 ms in, while the create
                # waits for the lock: on the loop, the loop waits with it.
                await asyncio.sleep(0.05)
                due = started + 0.05
                status, _ = await client.request("GET", "/v2.0/networks")
                get_ms = (time.perf_counter() - due) * 1000
                assert status == 200
                await app.state.services.endpoint.get_host_ports(server_cpu.HOST)
                rpc_ms = (time.perf_counter() - due) * 1000
                status, _ = await create
                create_ms = (time.perf_counter() - started) * 1000
                assert status == 201
            finally:
                release()
        await bus.stop()
    return {"get_networks_ms": round(get_ms, 2), "agent_call_ms": round(rpc_ms, 2),
            "port_create_ms": round(create_ms, 2)}


def _hold(url: str, hold_s: float) -> Callable[[], None]:
    """Take the write lock from outside the server for `hold_s` seconds."""
    parsed = make_url(url)
    done = threading.Event()
    if parsed.get_backend_name() == "sqlite":
        holder: Any = sqlite3.connect(str(parsed.database), isolation_level=None,
                                      check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")

        def end() -> None:
            holder.execute("ROLLBACK")
            holder.close()
    else:
        engine = create_engine(url)
        holder = engine.connect()
        holder.begin()
        holder.execute(text("LOCK TABLE ports IN EXCLUSIVE MODE"))

        def end() -> None:
            holder.rollback()
            holder.close()
            engine.dispose()

    def later() -> None:
        done.wait(hold_s)
        end()
        done.set()

    thread = threading.Thread(target=later, daemon=True)
    thread.start()

    def release() -> None:
        done.set()
        thread.join()
    return release


def _port_create_statements(net_id: str, subnet_id: str) -> list[tuple[Any, dict[str, Any]]]:
    now = datetime(2026, 12, 1, 10, 0, 0, 123456)
    port_id = str(uuid.uuid4())
    ip = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    return [
        (select(networks).where(networks.c.id == bindparam("n")), {"n": net_id}),
        (select(subnets).where(subnets.c.network_id == bindparam("n")), {"n": net_id}),
        (select(ip_allocations.c.ip_address).where(ip_allocations.c.subnet_id == bindparam("s")),
         {"s": subnet_id}),
        (insert(ports), dict(
            id=port_id, project_id="p", name="", description="", created_at=now,
            updated_at=now, revision_number=1, network_id=net_id,
            mac_address=f"fa:16:3e:{uuid.uuid4().hex[:6]}", admin_state_up=True,
            status="DOWN", device_id="", device_owner="", port_security_enabled=True,
            security_groups="[]", allowed_address_pairs="[]", binding_host="",
            binding_vif_type="unbound", binding_vif_details="{}", binding_vnic_type="normal",
            binding_profile="{}")),
        (insert(ip_allocations), {"subnet_id": subnet_id, "ip_address": ip,
                                  "port_id": port_id, "network_id": net_id}),
        (select(ports).where(ports.c.id == bindparam("p")), {"p": port_id}),
    ]


async def async_driver(url: str, count: int, repeats: int) -> dict[str, float] | None:
    async_url = _async_url(url)
    if async_url is None:
        return None
    try:
        from sqlalchemy.ext.asyncio import create_async_engine
    except ImportError:  # SQLAlchemy's asyncio needs greenlet, not a dependency
        return None

    sync_engine = make_engine(url)
    migrate(sync_engine)
    net_id, subnet_id = _seed(sync_engine)
    aengine = create_async_engine(async_url)

    async def by_async(n: int) -> None:
        for _ in range(n):
            async with aengine.begin() as conn:
                for statement, params in _port_create_statements(net_id, subnet_id):
                    await conn.execute(statement, params)

    def work(conn: Any) -> None:
        for statement, params in _port_create_statements(net_id, subnet_id):
            conn.execute(statement, params)

    async def by_threads(n: int) -> None:
        for _ in range(n):
            await run_transaction(sync_engine, work)

    async def on_loop(n: int) -> None:
        for _ in range(n):
            transaction(sync_engine, work)

    ways: dict[str, Callable[[int], Awaitable[None]]] = {
        "async driver": by_async, "sync driver, thread pool": by_threads,
        "sync driver, on the loop": on_loop}
    samples: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for way in ways.values():  # warm up each
            await way(20)
        for _ in range(repeats):
            for name, way in ways.items():
                t0 = time.process_time()
                await way(count)
                samples[name].append((time.process_time() - t0) * 1e6 / count)
    finally:
        await aengine.dispose()
        release_connections(sync_engine)
        sync_engine.dispose()
    return {f"{name} us_cpu_per_txn": round(min(values), 1) for name, values in samples.items()}


def _async_url(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        try:
            import aiosqlite  # noqa: F401
        except ImportError:
            return None
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg_async").render_as_string(
            hide_password=False)
    return None


def _seed(engine: Any) -> tuple[str, str]:
    now = datetime(2026, 12, 1)
    net_id, subnet_id = str(uuid.uuid4()), str(uuid.uuid4())
    std = {"project_id": "p", "name": "", "description": "", "created_at": now,
           "updated_at": now, "revision_number": 0}
    with engine.begin() as conn:
        conn.execute(insert(networks), {**std, "id": net_id, "admin_state_up": True,
                     "shared": False, "status": "ACTIVE", "mtu": 1450,
                     "port_security_enabled": True, "network_type": "vxlan",
                     "segment_physnet": "", "segmentation_id": uuid.uuid4().int % 10**6})
        conn.execute(insert(subnets), {**std, "id": subnet_id, "network_id": net_id,
                     "ip_version": 4, "cidr": "10.0.0.0/8", "gateway_ip": None,
                     "enable_dhcp": True, "allocation_pools": "[]", "dns_nameservers": "[]",
                     "host_routes": "[]"})
    return net_id, subnet_id


class _Database:
    """A throwaway database per engine (SQLite file, PostgreSQL database)."""

    def __init__(self, kind: str, admin_url: str, tmp: Path) -> None:
        self.kind, self.admin_url = kind, admin_url
        if kind == "sqlite":
            self.url = f"sqlite:///{tmp / f'ab-{uuid.uuid4().hex[:6]}.sqlite'}"
            return
        self.name = f"vifwire_ab_{uuid.uuid4().hex[:8]}"
        self._admin("CREATE DATABASE {}")
        self.url = make_url(admin_url).set(database=self.name).render_as_string(
            hide_password=False)

    def _admin(self, sql: str) -> None:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(sql.format(f'"{self.name}"')))
        admin.dispose()

    def fresh(self) -> str:
        if self.kind == "sqlite":
            self.url = self.url.rsplit("-", 1)[0] + f"-{uuid.uuid4().hex[:6]}.sqlite"
        return self.url

    def drop(self) -> None:
        if self.kind != "sqlite":
            self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    kinds = [("sqlite", "")] + ([("postgresql", args.postgres)] if args.postgres else [])
    report: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, admin_url in kinds:
            db = _Database(kind, admin_url, Path(tmp))
            try:
                section: dict[str, Any] = {}
                section["switches"] = await switches(db.fresh(), args.ports, args.rounds,
                                                     args.repeats)
                _print_switches(kind, section["switches"])
                section["held_lock"] = {}
                for label, threads in (("thread pool", 4), ("on the loop", 0)):
                    section["held_lock"][label] = await held_lock(db.fresh(), args.hold,
                                                                  threads)
                    print(f"{kind:10s} held lock {args.hold}s, {label:11s}: "
                          + ", ".join(f"{k} {v}" for k, v in
                                      section["held_lock"][label].items()))
                section["async_driver"] = await async_driver(db.fresh(), args.txns,
                                                             args.repeats)
                for name, value in (section["async_driver"] or {}).items():
                    print(f"{kind:10s} {name:38s} {value:8.1f}")
                report[kind] = section
            finally:
                db.drop()
    return report


def _print_switches(kind: str, rows: dict[str, Any]) -> None:
    for name, row in rows.items():
        gain = row["gain_of_speedup_us"]
        note = "" if name == "all on" else f"  ({gain:+.1f} us per port vs all on)"
        print(f"{kind:10s} {name:28s} {row['lifecycle_ms']:.3f} ms CPU per port lifecycle"
              f"{note}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hold", type=float, default=0.5)
    parser.add_argument("--txns", type=int, default=300,
                        help="transactions per sample of the async driver comparison")
    parser.add_argument("--postgres", default="postgresql+psycopg://root@127.0.0.1:5432/test",
                        help="admin URL of a PostgreSQL ('' to leave it out)")
    report = asyncio.run(main_async(parser.parse_args()))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"db_ab-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
