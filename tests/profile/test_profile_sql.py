"""The SQL probe on real engines: exact counts, build vs execute, cache hits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import orjson
import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
    text,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from vifwire.profile.sql import SqlProbe, install_sql_probe, merge_snapshots

metadata = MetaData()
ports = Table("probe_ports", metadata, Column("id", Integer, primary_key=True),
              Column("name", String(64)), Column("status", String(16)))


def _exercise(engine: Engine, probe: SqlProbe) -> None:
    with engine.begin() as conn:
        conn.execute(insert(ports), [{"name": f"p{i}", "status": "DOWN"} for i in range(3)])
    first = probe.snapshot()
    assert first["statements"] == 1  # one executemany
    with engine.connect() as conn:
        conn.execute(select(ports).where(ports.c.name == "p0")).all()
    after_one = probe.snapshot()
    with engine.connect() as conn:
        for i in range(9):
            conn.execute(select(ports).where(ports.c.name == f"p{i % 3}")).all()
    after_ten = probe.snapshot()

    assert after_ten["statements"] == 11
    assert after_ten["cache"].get("hit", 0) >= 9
    assert after_ten["cache_hit_ratio"] > after_one["cache_hit_ratio"]
    assert after_ten["build_s"] > 0 and after_ten["execute_s"] > 0
    top = {row["sql"]: row["count"] for row in after_ten["top"]}
    assert max(top.values()) == 10  # the repeated select, normalised to one row


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'probe.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_sqlite_counts_exactly(sqlite_engine: Engine, tmp_path: Path) -> None:
    probe = install_sql_probe(sqlite_engine)
    _exercise(sqlite_engine, probe)

    path = probe.write(tmp_path / "sql-server-1.json")
    data = orjson.loads(path.read_bytes())
    assert data["statements"] == 11
    assert data["dialect"] == "sqlite"
    probe.remove()
    with sqlite_engine.connect() as conn:
        conn.execute(select(ports)).all()
    assert probe.snapshot()["statements"] == 11  # removed: no longer counting


def test_raw_sql_and_orm_session(sqlite_engine: Engine) -> None:
    probe = SqlProbe(sqlite_engine)
    with sqlite_engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1").all()
        conn.execute(text("SELECT 2")).all()
    with Session(sqlite_engine) as session:
        session.execute(select(ports.c.id)).all()
        session.execute(select(ports.c.id)).all()
    snap = probe.snapshot()
    assert snap["statements"] == 4
    assert snap["cache"]["raw"] == 1
    assert snap["cache"].get("hit", 0) >= 1


def test_nested_execution_is_not_double_counted(sqlite_engine: Engine) -> None:
    from sqlalchemy import event

    @event.listens_for(sqlite_engine, "begin")
    def _begin(conn: object) -> None:
        conn.exec_driver_sql("SELECT 'begin'")  # type: ignore[attr-defined]

    probe = SqlProbe(sqlite_engine)
    with sqlite_engine.begin() as conn:
        conn.execute(select(ports)).all()
    snap = probe.snapshot()
    assert snap["statements"] == 2
    assert snap["build_s"] < 0.5


def test_merge_snapshots_sums() -> None:
    a = {"statements": 3, "build_s": 0.1, "execute_s": 0.2, "cache": {"hit": 1, "miss": 1},
         "top": [{"sql": "x", "count": 3, "build_s": 0.1, "execute_s": 0.2}], "dialect": "sqlite"}
    b = {"statements": 2, "build_s": 0.1, "execute_s": 0.0, "cache": {"hit": 2},
         "top": [{"sql": "x", "count": 2, "build_s": 0.1, "execute_s": 0.0}], "dialect": "sqlite"}
    merged = merge_snapshots([a, b])
    assert merged["statements"] == 5
    assert merged["cache"] == {"hit": 3, "miss": 1}
    assert merged["cache_hit_ratio"] == 0.75
    assert merged["top"][0]["count"] == 5


@pytest.mark.postgres
def test_postgres_counts_exactly(unavailable: Callable[[str, object], NoReturn]) -> None:
    engine = create_engine("postgresql+psycopg://root@127.0.0.1:5432/test",
                           connect_args={"connect_timeout": 2})
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS probe_ports")
    except OperationalError as exc:
        unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    metadata.create_all(engine)
    try:
        probe = SqlProbe(engine)
        _exercise(engine, probe)
        assert probe.snapshot()["dialect"] == "postgresql"
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_counts_from_several_threads_add_up(sqlite_engine: Engine) -> None:
    """Counters are per thread (no lock per statement); the snapshot sums them."""
    import threading

    from vifwire.db.fast import Fast

    by_name = Fast(select(ports.c.id).where(ports.c.name == "p0"))
    probe = SqlProbe(sqlite_engine)

    def run() -> None:
        with sqlite_engine.connect() as conn:
            for _ in range(25):
                by_name.execute(conn, {})
                conn.execute(select(ports)).all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = probe.snapshot()
    probe.remove()
    assert snap["statements"] == 200
    assert snap["cache"]["prepared"] == 100
    assert snap["clocks"]["build_s"] == "thread CPU"
    assert snap["execute_cpu_s"] > 0
    assert sum(row["count"] for row in snap["top"]) == 200
