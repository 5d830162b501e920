"""`Fast` statements against real SQLite, PostgreSQL and MariaDB: the same rows and
errors as SQLAlchemy's own execution, and the SQL probe still counts them. Every
test runs on the direct path and on the plain one (`direct_statements` off)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime

import psycopg
import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from vifwire.db.engine import hooks, make_engine
from vifwire.db.fast import Fast
from vifwire.profile.sql import install_sql_probe
from vifwire.server._db import release_connections, transaction

MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"

metadata = MetaData()
things = Table(
    f"vw_fast_{uuid.uuid4().hex[:8]}", metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("up", Boolean, nullable=False),
    Column("at", DateTime, nullable=False),
    Column("n", Integer, nullable=False),
    Column("note", String(8), nullable=False, default=""),
)
INSERT = Fast(insert(things))
BY_ID = Fast(select(things).where(things.c.id == bindparam("id")))
# A literal in the statement, as in `agent_type == OVS_AGENT_TYPE`.
UP_OF_KIND = Fast(select(things.c.id).where(things.c.kind == "port",
                                            things.c.up.is_(True)).order_by(things.c.id))
BUMP = Fast(update(things).where(things.c.id == bindparam("b_id")).values(
    n=things.c.n + 1))


@pytest.fixture(params=["direct", "plain"])
def direct(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "direct")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        "mysql"])
def engine(request: pytest.FixtureRequest, tmp_path: object, direct: bool) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/fast.sqlite"
    elif request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = MYSQL_URL
    engine = create_engine(url)
    hooks(engine).direct_statements = direct
    try:
        metadata.create_all(engine)
    except Exception as exc:
        request.getfixturevalue("unavailable")(
            "MariaDB" if request.param == "mysql" else request.param, exc)
    try:
        yield engine
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_rows_and_types_match_sqlalchemy(engine: Engine) -> None:
    at = datetime(2026, 11, 24, 9, 30, 15, 123456)
    probe = install_sql_probe(engine)
    try:
        with engine.connect() as conn, conn.begin():
            for i, (kind, up) in enumerate([("port", True), ("port", False), ("net", True)]):
                INSERT.execute(conn, {"id": f"id-{i}", "kind": kind, "up": up, "at": at, "n": i,
                                      "note": ""})
            row = BY_ID.execute(conn, {"id": "id-1"}).first()
            expected = conn.execute(select(things).where(things.c.id == "id-1")).first()
            assert expected is not None
            assert row == tuple(expected) and row._asdict() == expected._asdict()
            assert row.up is False and isinstance(row.at, datetime)
            if engine.dialect.name != "mysql":  # MariaDB's DATETIME drops microseconds
                assert row.at == at
            assert UP_OF_KIND.execute(conn, {}).scalars() == ["id-0"]
            assert BY_ID.execute(conn, {"id": "nothing"}).first() is None
            assert BUMP.execute(conn, {"b_id": "id-2"}).rowcount == 1
            assert BUMP.execute(conn, {"b_id": "nothing"}).rowcount == 0
            assert BY_ID.execute(conn, {"id": "id-2"}).first().n == 3
        snapshot = probe.snapshot()
    finally:
        probe.remove()
    direct = engine.dialect.name != "mysql" and hooks(engine).direct_statements
    assert snapshot["cache"].get("prepared", 0) == (9 if direct else 0)
    assert snapshot["statements"] == 10  # the 9 and the one conn.execute


def test_the_db_layer_never_imports_the_profiler() -> None:
    """The profiler hooks the database (`hooks(engine).observer`), not the reverse."""
    code = ("import sys, vifwire.db.fast, vifwire.db.engine, vifwire.server._db; "
            "sys.exit(any(m.startswith('vifwire.profile') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_driver_errors_become_sqlalchemy_errors_and_roll_back(engine: Engine) -> None:
    at = datetime(2026, 11, 24)
    values = {"id": "dup", "kind": "port", "up": True, "at": at, "n": 0, "note": ""}
    with engine.connect() as conn:
        with conn.begin():
            INSERT.execute(conn, values)
        with pytest.raises(IntegrityError), conn.begin():
            INSERT.execute(conn, {**values, "n": 1})
        with conn.begin():  # the connection is usable, the failed insert left nothing
            assert BY_ID.execute(conn, {"id": "dup"}).first().n == 0


def test_statements_after_a_reconnect_run_on_the_new_connection(engine: Engine) -> None:
    """`Fast` keeps one cursor per DBAPI connection: a connection replaced after
    it was invalidated (a database restart) gets a cursor of its own."""
    values = {"id": "kept", "kind": "port", "up": True, "at": datetime(2026, 11, 24), "n": 0,
              "note": ""}
    with engine.connect() as conn:
        with conn.begin():
            INSERT.execute(conn, values)
            assert BY_ID.execute(conn, {"id": "kept"}).first().n == 0
        old = conn.connection.dbapi_connection
        conn.invalidate()
        with conn.begin():
            assert BUMP.execute(conn, {"b_id": "kept"}).rowcount == 1
            assert BY_ID.execute(conn, {"id": "kept"}).first().n == 1
        assert conn.connection.dbapi_connection is not old


def test_a_column_left_to_its_default_is_refused_on_the_direct_path(engine: Engine) -> None:
    """Column defaults are filled by SQLAlchemy's execution, which the direct path
    skips: there a missing value is refused, not written as NULL; on the plain path
    (and always on MariaDB) SQLAlchemy runs the statement and fills the default."""
    values = {"id": "x", "kind": "port", "up": True, "at": datetime(2026, 11, 24), "n": 0}
    direct = engine.dialect.name != "mysql" and hooks(engine).direct_statements
    with engine.connect() as conn, conn.begin():
        if direct:
            with pytest.raises(ValueError, match="no value"):
                Fast(insert(things)).execute(conn, values)
        else:
            Fast(insert(things)).execute(conn, values)
            assert conn.execute(select(things.c.note)).scalar_one() == ""


def test_a_rolled_back_transaction_keeps_nothing_its_fast_statements_wrote(
        engine: Engine) -> None:
    """On PostgreSQL the direct path begins the transaction itself (psycopg's
    cursor is not involved): what it wrote goes with the rollback."""
    values = {"id": "gone", "kind": "port", "up": True, "at": datetime(2026, 12, 3), "n": 0,
              "note": ""}
    with engine.connect() as conn:
        with pytest.raises(RuntimeError), conn.begin():
            INSERT.execute(conn, values)
            assert BY_ID.execute(conn, {"id": "gone"}).first() is not None
            raise RuntimeError("roll back")
        with conn.begin():
            assert BY_ID.execute(conn, {"id": "gone"}).first() is None


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        release_connections(engine)
        metadata.drop_all(engine)
        engine.dispose()


def _attempts(engine: Engine, statement: Fast, params: dict[str, object]) -> tuple[object, int]:
    """Run `statement` in `_db.transaction`: its first row and how many runs it took."""
    runs = 0

    def work(conn: Connection) -> object:
        nonlocal runs
        runs += 1
        return statement.execute(conn, params).first()
    return transaction(engine, work), runs


@pytest.mark.postgres
def test_a_rollback_after_many_plain_statements_keeps_the_prepared_ones(
        pg_engine: Engine) -> None:
    """psycopg's own rollback deallocates every prepared statement once it has
    prepared some itself (it would after 5 runs of one statement); make_engine
    switches that off, so the statements prepared on libpq survive a rollback."""
    values = {"id": "kept", "kind": "port", "up": True, "at": datetime(2026, 12, 3), "n": 0,
              "note": ""}
    transaction(pg_engine, lambda conn: INSERT.execute(conn, values))
    assert _attempts(pg_engine, BY_ID, {"id": "kept"})[1] == 1  # prepared now
    for _ in range(8):  # the plain way, through psycopg's cursor
        transaction(pg_engine, lambda conn: conn.execute(
            select(things.c.n).where(things.c.id == "kept")).scalar())
    with pytest.raises(IntegrityError):
        transaction(pg_engine, lambda conn: INSERT.execute(conn, values), attempts=1)
    row, runs = _attempts(pg_engine, BY_ID, {"id": "kept"})
    assert row is not None and row.n == 0 and runs == 1


@pytest.mark.postgres
def test_a_statement_deallocated_under_it_is_prepared_again_on_retry(
        pg_engine: Engine) -> None:
    """A DEALLOCATE ALL by someone else aborts the next transaction that needs a
    prepared statement; `_db.transaction` runs it again and it is prepared anew."""
    values = {"id": "back", "kind": "port", "up": True, "at": datetime(2026, 12, 3), "n": 0,
              "note": ""}
    transaction(pg_engine, lambda conn: INSERT.execute(conn, values))
    assert _attempts(pg_engine, BY_ID, {"id": "back"})[1] == 1
    transaction(pg_engine, lambda conn: conn.exec_driver_sql("DEALLOCATE ALL"))
    row, runs = _attempts(pg_engine, BY_ID, {"id": "back"})
    assert row is not None and row.id == "back" and runs == 2
    assert _attempts(pg_engine, BY_ID, {"id": "back"})[1] == 1


@pytest.mark.postgres
def test_a_commit_that_fails_raises_the_integrity_error_and_keeps_nothing(
        pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """make_engine's commit runs on libpq, not psycopg's: what it commits stays,
    and a unique constraint checked only at COMMIT (deferred) fails it as an
    IntegrityError, the connection usable after."""
    def not_this_one(self: object) -> None:
        raise AssertionError("psycopg's commit")
    monkeypatch.setattr(psycopg.Connection, "commit", not_this_one)
    table = f"vw_deferred_{uuid.uuid4().hex[:8]}"
    with pg_engine.connect() as conn:
        with conn.begin():
            conn.exec_driver_sql(f"CREATE TABLE {table} (id varchar, CONSTRAINT {table}_u "
                                 "UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)")
        try:
            with conn.begin():
                conn.exec_driver_sql(f"INSERT INTO {table} VALUES ('a')")
            with pytest.raises(IntegrityError), conn.begin():
                conn.exec_driver_sql(f"INSERT INTO {table} VALUES ('b'), ('a')")
            with conn.begin():
                ids = conn.exec_driver_sql(f"SELECT id FROM {table}").scalars().all()
            assert ids == ["a"]
        finally:
            with conn.begin():
                conn.exec_driver_sql(f"DROP TABLE {table}")
