"""Transactions with retry: the database's constraints arbitrate races.

A service function runs whole inside one transaction; if a unique constraint
fires (two allocators picked the same IP, MAC or segment) or PostgreSQL reports
a serialization failure or deadlock, the whole function runs again and picks
anew. Requested values are checked inside the function, so a lost race on them
surfaces as the proper 409 on the second run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from vifwire.db.engine import READ_ONLY

log = logging.getLogger(__name__)

T = TypeVar("T")
ATTEMPTS = 20
_RETRY_PGCODES = {"40001", "40P01"}


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code in _RETRY_PGCODES:
        return True
    # MySQL deadlock (1213) / lock wait timeout (1205).
    args = getattr(exc.orig, "args", ())
    return bool(args) and args[0] in (1205, 1213)


def transaction(engine: Engine, work: Callable[[Connection], T], attempts: int = ATTEMPTS) -> T:
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as connection:
                return work(connection)
        except DBAPIError as exc:
            if attempt == attempts or not _retryable(exc):
                raise
            log.debug("transaction retry %d after %s", attempt, type(exc.orig).__name__)
    raise AssertionError("unreachable")


def read(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work` in a read-only transaction (deferred on SQLite: never waits for writers)."""
    with engine.connect() as connection:
        info = connection.info
        info[READ_ONLY] = True
        try:
            with connection.begin():
                return work(connection)
        finally:
            info.pop(READ_ONLY, None)
