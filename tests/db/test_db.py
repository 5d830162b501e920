"""The transaction helpers against real databases: a busy SQLite, a PostgreSQL
connection dropped by the server while held, and the event loop left free while
a writer holds the SQLite lock. Each runs with held connections and without."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from server.helpers import running
from vifwire.bus.base import BusError
from vifwire.db.engine import make_engine
from vifwire.server._db import (
    read,
    release_connections,
    run_read,
    run_transaction,
    transaction,
)
from vifwire.settings import Settings


@pytest.fixture(params=["held", "pooled"])
def held(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "held")


@pytest.fixture
def sqlite_engine(tmp_path: Path, held: bool) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}", held_connections=held)
    try:
        yield engine
    finally:
        release_connections(engine)
        engine.dispose()


def _short_busy_timeout(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=100")


def test_a_busy_sqlite_is_sqlalchemy_operational_error(sqlite_engine: Engine,
                                                       tmp_path: Path) -> None:
    """BEGIN IMMEDIATE goes straight to the driver; a lock timeout must still be
    SQLAlchemy's OperationalError (the API answers it 503, not 500)."""
    _short_busy_timeout(sqlite_engine)
    holder = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"):
            transaction(sqlite_engine, lambda c: c.execute(text("SELECT 1")).scalar())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert transaction(sqlite_engine, lambda c: c.execute(text("SELECT 1")).scalar()) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("helper", [transaction, read])
def test_a_held_postgresql_connection_dropped_by_the_server_is_replaced(
        pg_url: str, helper: object, held: bool) -> None:
    engine = make_engine(pg_url, held_connections=held)
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        pid = transaction(engine, lambda c: c.execute(text("SELECT pg_backend_pid()")).scalar())
        with admin.connect() as conn:  # a restart or an idle timeout, as the client sees it
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        run = helper  # type: ignore[assignment]
        assert run(engine, lambda c: c.execute(text("SELECT 2")).scalar()) == 2  # type: ignore[operator]
    finally:
        release_connections(engine)
        engine.dispose()
        admin.dispose()


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


async def test_sqlite_waits_for_the_lock_off_the_loop_and_cancel_waits(
        sqlite_engine: Engine, tmp_path: Path) -> None:
    """Uncontended, a SQLite write runs on the loop (no thread hop); when another
    writer holds the lock it waits on a database thread, and a cancelled caller
    still waits for the outcome."""
    transaction(sqlite_engine, lambda c: c.execute(text("CREATE TABLE t (x INTEGER)")))
    loop_thread = threading.get_ident()

    def write(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        return threading.get_ident()

    assert await run_transaction(sqlite_engine, write) == loop_thread
    assert await run_read(sqlite_engine, lambda c: threading.get_ident()) == loop_thread
    holder = _hold_write_lock(tmp_path / "db.sqlite")
    try:
        waiting = asyncio.create_task(run_transaction(sqlite_engine, write))
        await asyncio.sleep(0)  # it tried on the loop, found the lock taken, went to a thread
        # While it waits, the loop serves: a read does not wait for writers (WAL).
        assert await run_read(sqlite_engine, lambda c: c.execute(
            text("SELECT count(*) FROM t")).scalar()) == 1
        assert not waiting.done()
        waiting.cancel()
        await asyncio.sleep(0)
        assert not waiting.done()  # cancelled, still waiting for the transaction
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert transaction(sqlite_engine, lambda c: c.execute(
        text("SELECT count(*) FROM t")).scalar()) == 2  # it committed


async def test_a_writer_holding_the_sqlite_lock_does_not_stall_the_api(
        tmp_path: Path, held: bool) -> None:
    """Another writer holds the lock; a port create waits for it on a database
    thread, and meanwhile the loop answers other requests and agent calls."""
    settings = Settings(run_dir=tmp_path, host="server-1", nova_url="http://127.0.0.1:9/v2.1",
                        db_held_connections=held)
    async with running(settings) as stack:
        net = (await stack.client.post("/v2.0/networks", json={"network": {}})).json()
        net_id = net["network"]["id"]
        await stack.client.post("/v2.0/subnets", json={"subnet": {
            "network_id": net_id, "ip_version": 4, "cidr": "10.0.0.0/24"}})
        holder = _hold_write_lock(tmp_path / "vifwire.sqlite")
        try:
            create = asyncio.create_task(stack.client.post(
                "/v2.0/ports", json={"port": {"network_id": net_id}}))
            ready = await stack.client.get("/v2.0/networks")  # served while it waits
            assert ready.status_code == 200
            assert await stack.rpc("get_host_ports", host="compute-1") == []
            assert not create.done()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        created = await create
        assert created.status_code == 201, created.text


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (initdb + pg_ctl, a free port, a
    directory under /tmp), to stop and start at will: never the shared one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True,
                       capture_output=True, timeout=120)

    def init(self) -> None:
        self.root.mkdir(parents=True)
        for path in (self.root.parent, self.root):  # mkdtemp's is root's, mode 700
            shutil.chown(path, "postgres", "postgres")
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                          "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                          str(self.root / "log"), "-o", options, "start")

    def stop(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast",
                          "stop")


PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
PG_BIN = PG_BINS[-1].parent if PG_BINS else Path("/nonexistent")


@pytest.fixture
def private_pg(unavailable: Callable[[str, object], NoReturn]) -> Iterator[PrivatePostgres]:
    if not PG_BINS:
        unavailable("PostgreSQL server binaries", "none under /usr/lib/postgresql")
    pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="vifwire-pg-")) / "pg")
    pg.init()
    pg.start()
    try:
        yield pg
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop()
        shutil.rmtree(pg.root.parent, ignore_errors=True)


@pytest.mark.postgres
async def test_postgresql_restarted_is_503_then_service_resumes(
        private_pg: PrivatePostgres, tmp_path: Path, held: bool) -> None:
    settings = Settings(run_dir=tmp_path, host="server-1", nova_url="http://127.0.0.1:9/v2.1",
                        database_url=private_pg.url, db_held_connections=held)
    async with running(settings) as stack:
        r = await stack.client.post("/v2.0/networks", json={"network": {}})
        assert r.status_code == 201, r.text
        net_id = r.json()["network"]["id"]
        await asyncio.to_thread(private_pg.stop)
        for method, path, body in (("POST", "/v2.0/ports", {"port": {"network_id": net_id}}),
                                   ("GET", "/v2.0/networks", None),
                                   ("GET", f"/v2.0/networks/{net_id}", None)):
            down = await stack.client.request(method, path, json=body)
            assert down.status_code == 503, down.text
            assert down.json()["NeutronError"]["type"] == "ServiceUnavailable"
        with pytest.raises(BusError, match="OperationalError"):  # the agent retries
            await stack.rpc("get_host_ports", host="compute-1")
        await asyncio.to_thread(private_pg.start)
        # No restart of ours: the next requests find the database again.
        up = await stack.client.get(f"/v2.0/networks/{net_id}")
        assert up.status_code == 200, up.text
        created = await stack.client.post("/v2.0/ports", json={"port": {"network_id": net_id}})
        assert created.status_code == 201, created.text
