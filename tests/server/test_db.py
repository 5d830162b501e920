"""The transaction helpers against real databases: a busy SQLite and a PostgreSQL
connection dropped by the server while held."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from vifwire.db.engine import make_engine
from vifwire.server._db import _connection, read, release_connections, transaction


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        yield engine
    finally:
        release_connections(engine)
        engine.dispose()


def test_a_busy_sqlite_is_sqlalchemy_operational_error(sqlite_engine: Engine,
                                                       tmp_path: Path) -> None:
    """BEGIN IMMEDIATE goes straight to the driver; a lock timeout must still be
    SQLAlchemy's OperationalError (the API answers it 503, not 500)."""
    with _connection(sqlite_engine) as conn:  # this thread's held connection
        conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=100")
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
        pg_url: str, helper: object) -> None:
    engine = make_engine(pg_url)
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
