"""Hot statements run straight on the driver's cursor, compiled once per dialect.

SQLAlchemy Core spends, per execution of even a prebuilt statement, several
times what SQLite spends running it: coercion, cache-key lookup, an execution
context, event dispatch, a result object. The statements that every booted VM
runs (a dozen of them) are wrapped in `Fast`: compiled by SQLAlchemy once per
dialect (and per set of columns, for INSERT and UPDATE), their bind and result
type processors taken from that compilation, and then executed on the DBAPI
cursor of the connection's current transaction (on PostgreSQL through psycopg,
as a prepared statement on the connection's libpq handle: `vifwire.db.libpq`).
Rows come back as named tuples (`row.id`, `row._asdict()`), as Core's rows do
for what this code reads.

What stays SQLAlchemy's: the transaction (these run inside `Connection.begin()`),
error translation (a driver error goes through the Connection's own handler, so
IntegrityError, disconnect detection and invalidation work as for any
statement), and every dialect other than SQLite and PostgreSQL, where `Fast`
simply calls `Connection.execute`. Statements with expanding IN lists are not
wrapped. Statements run here bypass SQLAlchemy's engine events, so they are
reported to the engine's `StatementObserver` (`vifwire.db.engine.hooks`), where
the SQL profiler listens.

The direct path leans on SQLAlchemy internals (`Connection._handle_dbapi_exception`,
`SQLCompiler._bind_processors`, `_result_columns`, `TypeEngine._cached_result_processor`),
tested on SQLAlchemy 2.0-2.1. `hooks(engine).direct_statements = False` (the
`db_direct_statements` setting) makes every `Fast` a plain `Connection.execute`.
"""

from __future__ import annotations

import contextlib
import time
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql import Executable

from vifwire.db.engine import hooks

DIRECT_DIALECTS = frozenset({"sqlite", "postgresql"})


@dataclass(frozen=True)
class _Plan:
    sql: str
    positional: tuple[str, ...] | None  # bind names in order, for qmark/format styles
    literals: dict[str, Any]  # values written into the statement (`col == "x"`)
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # name -> bind processor
    numbered: tuple[bytes, tuple[str, ...]] | None  # psycopg: `sql` as libpq runs it
    row: Any  # named tuple class of the result, None for DML without rows
    results: tuple[Callable[[Any], Any] | None, ...]  # per column result processor


class Fast:
    """A Core statement run on the driver's cursor (see the module doc)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        # By dialect class and paramstyle, not by dialect object: engines come and
        # go (tests make many), and a new object can reuse a dead one's id().
        self._plans: dict[tuple[type, str, frozenset[str]], _Plan] = {}

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> FastResult:
        dialect = conn.dialect
        engine_hooks = hooks(conn.engine)
        if dialect.name not in DIRECT_DIALECTS or not engine_hooks.direct_statements:
            return FastResult.of(conn.execute(self.statement, dict(params)))
        observer = engine_hooks.observer
        started = time.thread_time() if observer is not None else 0.0
        key = (type(dialect), dialect.paramstyle, frozenset(params))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._compile(conn, params)
        values: Any = {**plan.literals, **params} if plan.literals else dict(params)
        for name, process in plan.binds:
            values[name] = process(values[name])
        if plan.positional is not None:
            values = tuple(values[name] for name in plan.positional)
        cursor = None
        if observer is not None:
            built, built_wall = time.thread_time(), time.perf_counter()
        try:
            if plan.numbered is not None:
                rows, rowcount = _session(conn).execute(*plan.numbered, values)
            else:
                cursor = _cursor(conn)
                cursor.execute(plan.sql, values)
                rows = cursor.fetchall() if plan.row is not None else []
                rowcount = cursor.rowcount
        except dialect.loaded_dbapi.Error as exc:
            _drop_cursor(conn)
            conn._handle_dbapi_exception(exc, plan.sql, values, cursor, None)  # raises
            raise
        if observer is not None:
            # Building is this thread's CPU, not wall time: waiting for the GIL
            # (the agent's thread, the notifier's) is no part of building it.
            observer.record(plan.sql, built - started, time.perf_counter() - built_wall,
                            time.thread_time() - built)
        if plan.row is None:
            return FastResult([], rowcount)
        make = plan.row._make
        if not any(plan.results):  # strings and integers: the driver's values as they are
            return FastResult([make(row) for row in rows], rowcount)
        return FastResult([make(_processed(row, plan.results)) for row in rows], rowcount)

    def _compile(self, conn: Connection, params: Mapping[str, Any]) -> _Plan:
        dialect = conn.dialect
        statement: Any = self.statement
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(params))
        if compiled.insert_prefetch or compiled.update_prefetch:
            # Column defaults are filled by SQLAlchemy's execution: pass every column.
            names = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
            raise ValueError(f"Fast statement: no value for column(s) {names}")
        positional = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        needed = set(positional) if positional is not None else set(compiled.binds)
        literals = {}
        for name in needed - set(params):
            bind = compiled.binds[name]
            if bind.required or callable(bind.value):
                raise ValueError(f"Fast statement: no value for parameter {name!r}")
            literals[name] = bind.effective_value
        binds = tuple((name, process) for name, process in compiled._bind_processors.items()
                      if name in needed and process is not None)
        numbered = None
        if dialect.driver == "psycopg":
            from vifwire.db import libpq  # psycopg stays out of SQLite-only processes
            numbered = libpq.numbered(compiled.string)
        columns = compiled._result_columns
        if not columns:
            return _Plan(compiled.string, positional, literals, binds, numbered, None, ())
        row = namedtuple("Row", [c.keyname for c in columns])  # type: ignore[misc]
        results = tuple(c.type._cached_result_processor(dialect, None) for c in columns)
        return _Plan(compiled.string, positional, literals, binds, numbered, row, results)


_CURSOR = "vifwire_fast_cursor"  # in the pool's record of a DBAPI connection


def _cursor(conn: Connection) -> Any:
    """The DBAPI connection's cursor for `Fast` statements, made once: each of
    these statements fetches all its rows before the next runs on that
    connection (one thread at a time), and a new psycopg cursor costs ~4 µs of
    CPU per statement. Kept with the DBAPI connection it belongs to."""
    return _kept(conn, _CURSOR, lambda dbapi_connection: dbapi_connection.cursor())


_SESSION = "vifwire_fast_libpq"


def _session(conn: Connection) -> Any:
    """The DBAPI connection's `libpq.Session` (PostgreSQL through psycopg), kept
    as the cursor is: with the pool's record of that DBAPI connection."""
    from vifwire.db import libpq

    return _kept(conn, _SESSION, libpq.Session)


def _kept(conn: Connection, key: str, make: Callable[[Any], Any]) -> Any:
    """`make(dbapi_connection)`, made once per DBAPI connection and kept in the
    pool's record of it under `key` (a record outlives a replaced connection)."""
    record = conn.connection
    dbapi_connection: Any = record.dbapi_connection
    kept = record.info.get(key)
    if kept is None or kept[0] is not dbapi_connection:
        kept = record.info[key] = (dbapi_connection, make(dbapi_connection))
    return kept[1]


def _drop_cursor(conn: Connection) -> None:
    """After a driver error: a new cursor next time."""
    kept = conn.connection.info.pop(_CURSOR, None)
    if kept is not None:
        with contextlib.suppress(Exception):
            kept[1].close()


def _processed(row: tuple[Any, ...], processors: tuple[Callable[[Any], Any] | None, ...]
               ) -> Iterator[Any]:
    for value, process in zip(row, processors, strict=True):
        yield process(value) if process is not None and value is not None else value


class FastResult:
    """What callers read of a result: rows, the first one, a scalar, the rowcount."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    @classmethod
    def of(cls, result: Any) -> FastResult:
        rows = list(result) if result.returns_rows else []
        return cls(rows, result.rowcount)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalars(self) -> list[Any]:
        return [row[0] for row in self.rows]
