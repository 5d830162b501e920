"""Transactions with retry: the database's constraints arbitrate races.

A service function runs whole inside one transaction; if a unique constraint
fires (two allocators picked the same IP, MAC or segment) or PostgreSQL reports
a serialization failure or deadlock, the whole function runs again and picks
anew. Requested values are checked inside the function, so a lost race on them
surfaces as the proper 409 on the second run.

Each thread keeps one open SQLAlchemy Connection per engine and begins its
transactions on it: opening a Connection per transaction (pool checkout, event
dispatch set-up, reset on checkin) cost as much CPU as the statements of a port
create. A connection the database dropped while it sat idle (a restart, an idle
timeout) fails its next statement and is invalidated; the work then runs again
on a new one. A transaction started inside another one (on the same thread)
gets a pooled connection of its own. `release_connections` closes them all when
the app stops. With `held_connections` off (the `db_held_connections` setting)
each transaction takes a pooled connection and gives it back, SQLAlchemy's
plain path.

Where threads meet asyncio for the database: `run_transaction` and `run_read`
are the event loop's way in, the one boundary. Waiting -- for SQLite's write
lock (busy timeout 30 s, 20 attempts), for a PostgreSQL or MariaDB round trip,
lock or reconnect -- happens on a small thread pool per engine (`db_threads`,
4 by default), never on the loop that serves every other request and agent
call. Each pool thread keeps its held connection. The awaiting coroutine, if
cancelled, still waits for the transaction to end, so whoever cancelled it
never acts on a transaction whose outcome it does not know.

SQLite is in-process and a statement is microseconds of CPU; a hop to a thread
and back costs more than the port create's statements (bench/db_ab.py). So on
SQLite a transaction first runs on the loop with a write lock taken without
waiting (`NO_WAIT`: busy timeout 0 for its BEGIN IMMEDIATE); only when another
writer holds the lock does it go to the pool to wait there. WAL readers never
wait for writers and stay on the loop. `db_threads = 0` runs everything on the
loop, waits included (the A/B baseline). The synchronous `transaction` and
`read` stay for callers that are not on a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from vifwire.db.engine import NO_WAIT, READ_ONLY, hooks

log = logging.getLogger(__name__)

T = TypeVar("T")
ATTEMPTS = 20
# Serialization failure, deadlock; a prepared statement someone deallocated
# (vifwire.db.libpq prepares it again in the next transaction).
_RETRY_PGCODES = {"40001", "40P01", "26000"}


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    if exc.connection_invalidated:  # a held connection the server dropped: a new one
        return True
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code in _RETRY_PGCODES:
        return True
    # MySQL deadlock (1213) / lock wait timeout (1205).
    args: tuple[object, ...] = getattr(exc.orig, "args", ())
    return bool(args) and args[0] in (1205, 1213)


class _Held:
    """The open connections of one engine, one per thread that used it, and the
    threads that run its transactions for the event loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_thread: dict[int, Connection] = {}
        self.executor: ThreadPoolExecutor | None = None


def _held(engine: Engine) -> _Held:
    held = _HELD.get(engine)
    if held is None:
        with _HELD_LOCK:
            held = _HELD.setdefault(engine, _Held())
    return held


_HELD: weakref.WeakKeyDictionary[Engine, _Held] = weakref.WeakKeyDictionary()
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def _connection(engine: Engine) -> Iterator[Connection]:
    if not hooks(engine).held_connections:
        with engine.connect() as own:
            yield own
        return
    held = _held(engine)
    thread = threading.get_ident()
    connection = held.by_thread.get(thread)
    if connection is None or connection.closed or connection.invalidated:
        if connection is not None:
            connection.close()
        connection = engine.connect()
        with held.lock:
            held.by_thread[thread] = connection
    if connection.in_transaction():  # nested: this thread's connection is busy
        with engine.connect() as own:
            yield own
        return
    yield connection


def release_connections(engine: Engine) -> None:
    """Close the connections `transaction` and `read` kept open on `engine`."""
    with _HELD_LOCK:
        held = _HELD.pop(engine, None)
    if held is None:
        return
    with held.lock:
        connections, held.by_thread = list(held.by_thread.values()), {}
        executor, held.executor = held.executor, None
    if executor is not None:
        executor.shutdown(wait=True)
    for connection in connections:
        with contextlib.suppress(Exception):
            connection.close()


def transaction(engine: Engine, work: Callable[[Connection], T], attempts: int = ATTEMPTS,
                read_only: bool = False, no_wait: bool = False) -> T:
    """Run `work` in one transaction, again on a retryable error (see `_retryable`).
    `no_wait` (SQLite): if another writer holds the lock, raise at once."""
    for attempt in range(1, attempts + 1):
        try:
            with _connection(engine) as connection:
                info = connection.info
                if read_only:
                    info[READ_ONLY] = True
                if no_wait:
                    info[NO_WAIT] = True
                try:
                    with connection.begin():
                        return work(connection)
                finally:
                    info.pop(READ_ONLY, None)
                    info.pop(NO_WAIT, None)
        except DBAPIError as exc:
            if attempt == attempts or not _retryable(exc):
                raise
            log.debug("transaction retry %d after %s", attempt, type(exc.orig).__name__)
    raise AssertionError("unreachable")


def read(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work` in a read-only transaction (deferred on SQLite: never waits for writers)."""
    return transaction(engine, work, read_only=True)


async def run_transaction(engine: Engine, work: Callable[[Connection], T],
                          attempts: int = ATTEMPTS, read_only: bool = False) -> T:
    """`transaction` for a coroutine: the work runs on the engine's database
    threads, the loop stays free meanwhile (see the module doc)."""
    threads = hooks(engine).threads
    if threads <= 0:
        return transaction(engine, work, attempts, read_only)
    if engine.dialect.name == "sqlite":
        if read_only:
            return transaction(engine, work, attempts, read_only=True)
        try:
            return transaction(engine, work, attempts, no_wait=True)
        except OperationalError as exc:
            if not _locked(exc):
                raise
        # Another writer holds the lock: wait for it off the loop.
    held = _held(engine)
    executor = held.executor
    if executor is None:
        with held.lock:
            if held.executor is None:
                held.executor = ThreadPoolExecutor(threads, thread_name_prefix="vifwire-db")
            executor = held.executor
    future = asyncio.get_running_loop().run_in_executor(
        executor, transaction, engine, work, attempts, read_only)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # The work runs on: let it end (commit or not) before giving up.
        with contextlib.suppress(Exception):
            await future
        raise


def _locked(exc: OperationalError) -> bool:
    return "locked" in str(exc.orig) or "busy" in str(exc.orig)


async def run_read(engine: Engine, work: Callable[[Connection], T]) -> T:
    """`read` for a coroutine: a read-only `run_transaction`."""
    return await run_transaction(engine, work, read_only=True)
