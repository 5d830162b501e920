"""PostgreSQL's direct path for `Fast` statements: named prepared statements on libpq.

psycopg's cursor runs every statement through its non-blocking protocol loop, a
chain of Python generators that send, poll the socket and collect results, and
it begins each transaction with a round trip of its own. On this machine that
loop is most of a hot statement's client CPU: a by-id SELECT of a port row took
53 us of thread CPU through `cursor.execute` and 17 us as `PGconn.exec_prepared`
(an UPDATE 39 against 18 us), the same rows coming back. So here a `Fast`
statement runs as a prepared statement on the connection's libpq handle
(`psycopg.pq`, psycopg's public libpq wrapper), which blocks in C with the GIL
released, with psycopg's own `Transformer` dumping the parameters (as text) and
loading the rows, so values are exactly those the cursor would give.

What stays psycopg's, so the connection behaves as if its cursor had run the
statement:

* The transaction. psycopg begins one before a connection's first statement
  when libpq reports it idle; here the same BEGIN (psycopg's own start command,
  which carries any isolation level SQLAlchemy set on the connection) is sent
  on the same condition. psycopg's commit and rollback read libpq's status too,
  so they end such a transaction as their own.
* The commit. `make_engine` makes `libpq.commit` the dialect's `do_commit`
  (psycopg's own commit goes through the same protocol loop: ~40 us more per
  transaction).
* Errors. A failed result becomes psycopg's exception for its SQLSTATE
  (`psycopg.errors.error_from_result`), which `Fast` hands to SQLAlchemy's
  handler like any driver error: a unique violation is an IntegrityError, and a
  dropped connection leaves libpq's status BAD, which is what SQLAlchemy's
  disconnect check for psycopg reads.

Prepared statements belong to one server connection: a `Session` per DBAPI
connection remembers which it has (`vw_fast_<n>`; psycopg names its own
`_pg3_<n>`), so a connection replaced after a restart prepares them again.
psycopg's rollback deallocates every prepared statement of the session when it
has prepared some of its own, so `make_engine` switches its automatic preparing
off; if a statement is gone anyway, the error aborts that one transaction, which
`vifwire.server._db` runs again, and the session prepares anew.
psycopg's private `_get_tx_start_command` is the one internal used (psycopg 3,
which pyproject pins).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import Connection, errors, pq
from psycopg.adapt import PyFormat, Transformer

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_FAILED = frozenset({pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.BAD_RESPONSE,
                     pq.ExecStatus.NONFATAL_ERROR})


def numbered(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """Psycopg's pyformat SQL (`%(name)s`, `%%`) in libpq's `$n` form, and the
    parameter names in the order of their numbers (a repeated name keeps its number)."""
    numbers: dict[str, int] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        number = numbers.setdefault(name, len(numbers) + 1)
        return f"${number}"

    return _PLACEHOLDER.sub(replace, sql).encode(), tuple(numbers)


class Session:
    """One DBAPI connection's prepared statements and value adapters."""

    def __init__(self, connection: Connection[Any]) -> None:
        self.connection = connection
        self.transformer = Transformer(connection)
        self.prepared: dict[bytes, bytes] = {}  # SQL -> statement name
        self._numbers = itertools.count()

    def execute(self, sql: bytes, names: Sequence[str], values: Mapping[str, Any]
                ) -> tuple[list[tuple[Any, ...]], int]:
        """Run `sql` (from `numbered`) with `values` by name: the rows and the rowcount.
        Raises psycopg's exception for a failed statement (see the module doc)."""
        connection = self.connection
        pgconn = connection.pgconn
        if pgconn.transaction_status == pq.TransactionStatus.IDLE and not connection.autocommit:
            self._check(pgconn.exec_(connection._get_tx_start_command()))
        name = self.prepared.get(sql)
        if name is None:
            name = f"vw_fast_{next(self._numbers)}".encode()
            self._check(pgconn.prepare(name, sql))
            self.prepared[sql] = name
        transformer = self.transformer
        # None stands for NULL, as in psycopg's own calls (its stubs say bytes only).
        params: Any = transformer.dump_sequence([values[n] for n in names],
                                                [PyFormat.TEXT] * len(names))
        try:
            result = self._check(pgconn.exec_prepared(name, params))
        except errors.InvalidSqlStatementName:
            # Someone deallocated it (a DEALLOCATE ALL or DISCARD ALL on this
            # session): this transaction is aborted, the next prepares anew
            # under new names (vifwire.server._db retries on this error).
            self.prepared.clear()
            raise
        rowcount = result.command_tuples
        if result.status != pq.ExecStatus.TUPLES_OK:
            return [], -1 if rowcount is None else rowcount
        transformer.set_pgresult(result)
        rows = transformer.load_rows(0, result.ntuples, tuple)
        return rows, result.ntuples if rowcount is None else rowcount

    def _check(self, result: pq.abc.PGresult) -> pq.abc.PGresult:
        return _checked(result, self.connection)


def _checked(result: pq.abc.PGresult, connection: Connection[Any]) -> pq.abc.PGresult:
    """`result`, or psycopg's exception for its SQLSTATE if it failed."""
    if result.status in _FAILED:
        raise errors.error_from_result(result, encoding=connection.info.encoding)
    return result


def commit(connection: Connection[Any]) -> None:
    """psycopg's `Connection.commit` for a plain transaction (no psycopg transaction
    block, two-phase commit or pipeline: SQLAlchemy uses none), as one blocking
    libpq call: the dialect's `do_commit` on engines that run `Fast` statements here."""
    pgconn = connection.pgconn
    if pgconn.transaction_status == pq.TransactionStatus.IDLE:
        return
    _checked(pgconn.exec_(b"COMMIT"), connection)
