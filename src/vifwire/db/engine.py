"""Engine construction and programmatic Alembic migrations.

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` for every writing
transaction: pysqlite's deferred BEGIN lets two writers deadlock on the
read->write lock upgrade (busy_timeout cannot help there), so we take the write
lock up front. A connection marked READ_ONLY in its `info` (see
`vifwire.server._db.read`) begins deferred instead: in WAL mode readers never
wait for a writer. The BEGIN goes straight to the driver, not through
SQLAlchemy's statement machinery: every request pays for one (with
`direct_statements` off it goes through `exec_driver_sql`, SQLAlchemy's public path).

`EngineHooks` (one per engine, `hooks(engine)`) holds what the layers above
set on an engine without the db package knowing them: which speed-ups are on
(`direct_statements`: `vifwire.db.fast` runs hot statements on the driver's
cursor; `held_connections`: `vifwire.server._db` keeps a connection per thread)
and an optional `StatementObserver` that `Fast` reports each statement to (the
SQL profiler installs itself there; db never imports profile).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import PoolProxiedConnection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Connection.info keys: the transaction about to begin only reads; it must not
# wait for SQLite's write lock (fail at once with "database is locked").
READ_ONLY = "vifwire_read_only"
NO_WAIT = "vifwire_no_wait"
GROUP_CONCAT_MAX_LEN = 2**32 - 1  # MySQL's and MariaDB's largest


class StatementObserver(Protocol):
    """Told about each statement `vifwire.db.fast` runs on the driver's cursor,
    which SQLAlchemy's engine events never see."""

    def record(self, statement: str, build_cpu_s: float, execute_s: float,
               execute_cpu_s: float) -> None:
        """`build_cpu_s`: this thread's CPU from the call to the driver call;
        `execute_s`: the driver call's wall time, `execute_cpu_s` its CPU."""


@dataclass
class EngineHooks:
    # The speed-ups on private SQLAlchemy paths, each with a plain fallback.
    direct_statements: bool = True
    held_connections: bool = True
    # Threads that run transactions for the event loop (`vifwire.server._db`);
    # 0 runs them on the loop itself.
    threads: int = 4
    observer: StatementObserver | None = None


_HOOKS: weakref.WeakKeyDictionary[Engine, EngineHooks] = weakref.WeakKeyDictionary()


def hooks(engine: Engine) -> EngineHooks:
    """The hooks of `engine` (the defaults for an engine `make_engine` did not make)."""
    found = _HOOKS.get(engine)
    if found is None:
        found = _HOOKS.setdefault(engine, EngineHooks())
    return found


def make_engine(url: str, *, direct_statements: bool = True, held_connections: bool = True,
                threads: int = 4) -> Engine:
    engine = _create(url, threads, direct_statements)
    found = hooks(engine)
    found.direct_statements = direct_statements
    found.held_connections = held_connections
    found.threads = threads
    return engine


def _create(url: str, threads: int, direct_statements: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=max(8, threads + 2)
        )
        _tune_sqlite(engine)
        return engine
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": max(10, threads + 2),
                              "max_overflow": 20}
    if parsed.get_backend_name() == "mysql":
        kwargs["isolation_level"] = "READ COMMITTED"
        engine = create_engine(url, **kwargs)
        _tune_mysql(engine)
        return engine
    if parsed.get_driver_name() != "psycopg" or not direct_statements:
        return create_engine(url, **kwargs)
    from vifwire.db import libpq  # psycopg stays out of SQLite-only processes

    # The hot statements are prepared by vifwire.db.libpq. psycopg's own
    # automatic preparing would add little (few statements run the plain
    # way) and its rollback sends DEALLOCATE ALL, which drops those too.
    kwargs["connect_args"] = {"prepare_threshold": None}
    engine = create_engine(url, **kwargs)

    def do_commit(proxied: PoolProxiedConnection) -> None:
        libpq.commit(proxied.dbapi_connection)  # type: ignore[arg-type]

    engine.dialect.do_commit = do_commit  # type: ignore[method-assign,assignment]
    return engine


def _tune_mysql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # GROUP_CONCAT (SQLAlchemy's aggregate_strings: a security group's member
        # addresses in one row) cuts its result at this length without an error;
        # MySQL's default is 1,024 bytes. The packet size still bounds it.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET SESSION group_concat_max_len = {GROUP_CONCAT_MAX_LEN}")
        cursor.close()


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        sql = "BEGIN" if connection.info.get(READ_ONLY, False) else "BEGIN IMMEDIATE"
        no_wait = connection.info.get(NO_WAIT, False)
        raw = connection.connection.dbapi_connection
        if no_wait:  # the one place a write waits for the lock: not this time
            raw.execute("PRAGMA busy_timeout=0")
        try:
            if not hooks(engine).direct_statements:
                connection.exec_driver_sql(sql)
                return
            try:
                raw.execute(sql)
            except connection.dialect.loaded_dbapi.Error as exc:
                # As SQLAlchemy's own statements do: a busy database ("database is
                # locked") becomes sqlalchemy.exc.OperationalError, answered as 503.
                connection._handle_dbapi_exception(exc, sql, (), None, None)
                raise
        finally:
            if no_wait:
                raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the schema to head. Several processes may start at once on
    PostgreSQL; an advisory lock makes the later ones wait and find head."""
    config = alembic_config()
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7391)")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
