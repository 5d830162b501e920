"""Counts what each `vifwire server` worker does, for bench/dist_counts.py.

Python imports `sitecustomize` at start-up from the path; bench/dist_counts.py
puts this directory first on PYTHONPATH and names a directory in VWCOUNT_DIR.
Without VWCOUNT_DIR, or in any process that is not `vifwire ... server`, this
does nothing. In a server it wraps, by name, what every worker goes through:

- psycopg's `Cursor.execute` / `executemany` (each SQL statement, IN lists and
  placeholders folded so one statement is one key) and `Connection.commit` /
  `rollback` (transactions; SQLAlchemy ends each one there);
- aiormq's `Channel.basic_publish` (each message published, by routing key and
  method: casts, calls, replies) and `AmqpBus._handle` (each message consumed);
- `MetricsApp.__call__` (each HTTP request, ids and query values folded);
- the cyclic GC (collections and their CPU, per generation).

Counting starts in each worker after the supervisor forks it (the supervisor
forks before any thread exists: the threads start in the child); each worker
writes its counts to VWCOUNT_DIR/<pid>.json every 0.2 s. Profiling only: the
wrappers reach into libraries' internals and are never imported by vifwire.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import re
import sys
import threading
import time
from typing import Any

OUT = os.environ.get("VWCOUNT_DIR")
_counts: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()
_IN_LIST = re.compile(r"\(\s*(%s|\$\d+)(\s*,\s*(%s|\$\d+))*\s*\)")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}")


def bump(key: str, n: int = 1) -> None:
    with _lock:
        _counts[key] += n


def statement(query: Any) -> str:
    text = query.decode(errors="replace") if isinstance(query, bytes) else str(query)
    return _IN_LIST.sub("(..)", re.sub(r"\s+", " ", text))[:110]


def _wrap_psycopg() -> None:
    import psycopg

    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany

    def counted_execute(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        bump("sql " + statement(query))
        return execute(self, query, params, **kw)

    def counted_executemany(self: Any, query: Any, params: Any, **kw: Any) -> Any:
        bump("sqlmany " + statement(query))
        return executemany(self, query, params, **kw)

    setattr(psycopg.Cursor, "execute", counted_execute)  # noqa: B010 (mypy: a method)
    setattr(psycopg.Cursor, "executemany", counted_executemany)  # noqa: B010
    for name in ("commit", "rollback"):
        original = getattr(psycopg.Connection, name)

        def ended(self: Any, _original: Any = original, _name: str = name) -> Any:
            bump("tx " + _name)
            return _original(self)

        setattr(psycopg.Connection, name, ended)


def _wrap_amqp() -> None:
    channel = sys.modules["aiormq.channel"].Channel
    publish = channel.basic_publish

    async def counted_publish(self: Any, body: bytes, *args: Any, routing_key: str = "",
                              properties: Any = None, **kw: Any) -> Any:
        topic = routing_key.split(".", 1)[-1]
        topic = next((t for t in ("agent", "reply") if topic.startswith(t)), topic)
        bump(f"pub {topic} {getattr(properties, 'message_type', None)}")
        bump("pub bytes", len(body))
        return await publish(self, body, *args, routing_key=routing_key,
                             properties=properties, **kw)

    channel.basic_publish = counted_publish
    bus = sys.modules["vifwire.bus.amqp"].AmqpBus
    handle = bus._handle

    async def counted_handle(self: Any, served: Any, message: Any) -> Any:
        bump(f"consume {served.topic} {message.type}")
        return await handle(self, served, message)

    bus._handle = counted_handle


def _wrap_http() -> None:
    app = sys.modules["vifwire.metrics"].MetricsApp
    call = app.__call__

    async def counted_call(self: Any, scope: Any, receive: Any, send: Any) -> Any:
        if scope.get("type") == "http":
            query = re.sub(r"=[^&]*", "=", scope.get("query_string", b"").decode())
            bump(f"http {scope['method']} {_UUID.sub('<id>', scope['path'])}?{query}")
        return await call(self, scope, receive, send)

    app.__call__ = counted_call


def _wrap_when_imported() -> None:
    """The worker imports the bus and the app after the fork: wrap each once there."""
    pending = {("aiormq.channel", "vifwire.bus.amqp"): _wrap_amqp,
               ("vifwire.metrics",): _wrap_http}
    while pending:
        for modules, wrap in list(pending.items()):
            if all(m in sys.modules for m in modules):
                wrap()
                del pending[modules]
        time.sleep(0.01)


_gc_started = [0.0]


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.thread_time()
        return
    bump(f"gc gen{info['generation']} collections")
    bump(f"gc gen{info['generation']} us", int((time.thread_time() - _gc_started[0]) * 1e6))


def _write_often() -> None:
    while True:
        time.sleep(0.2)  # a worker stopped by SIGTERM loses at most this much
        with _lock:
            data = dict(_counts)
        # Renamed into place: a worker killed mid-write leaves its last whole file.
        path = f"{OUT}/{os.getpid()}.json"
        with open(f"{path}.tmp", "w") as out:
            json.dump(data, out)
        os.replace(f"{path}.tmp", path)


def _in_worker() -> None:
    _counts.clear()
    gc.callbacks.append(_on_gc)
    threading.Thread(target=_wrap_when_imported, daemon=True).start()
    threading.Thread(target=_write_often, daemon=True).start()


if OUT and "server" in sys.argv:
    _wrap_psycopg()
    os.register_at_fork(after_in_child=_in_worker)
