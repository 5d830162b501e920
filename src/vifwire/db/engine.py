"""Engine construction and programmatic Alembic migrations.

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` for every writing
transaction: pysqlite's deferred BEGIN lets two writers deadlock on the
read->write lock upgrade (busy_timeout cannot help there), so we take the write
lock up front. A connection marked READ_ONLY in its `info` (see
`vifwire.server._db.read`) begins deferred instead: in WAL mode readers never
wait for a writer. The BEGIN goes straight to the driver, not through
SQLAlchemy's statement machinery: every request pays for one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Connection.info key: the transaction about to begin only reads.
READ_ONLY = "vifwire_read_only"


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, pool_size=8
        )
        _tune_sqlite(engine)
        return engine
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}
    if parsed.get_backend_name() == "mysql":
        kwargs["isolation_level"] = "READ COMMITTED"
    return create_engine(url, **kwargs)


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
        try:
            connection.connection.dbapi_connection.execute(sql)
        except connection.dialect.loaded_dbapi.Error as exc:
            # As SQLAlchemy's own statements do: a busy database ("database is
            # locked") becomes sqlalchemy.exc.OperationalError, answered as 503.
            connection._handle_dbapi_exception(exc, sql, (), None, None)
            raise


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
