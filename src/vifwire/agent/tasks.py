"""Named background tasks and one serialized worker per key.

`spawn` is the only way the agent starts a task: it names it, keeps a strong
reference, and logs a failure instead of letting it vanish.

`KeyedWorkers` runs `handler(key)` for each kicked key, never twice at once for
the same key, different keys concurrently. Kicks that arrive while a key's
handler runs collapse into one more run afterwards: the handler always reads
the latest state, so intermediate states need no replay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from vifwire.aio import cancel_and_wait

log = logging.getLogger(__name__)

T = TypeVar("T")
_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed", task.get_name(), exc_info=task.exception())


class KeyedWorkers:
    def __init__(self, handler: Callable[[str], Awaitable[None]], prefix: str) -> None:
        self._handler = handler
        self._prefix = prefix
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()

    def kick(self, key: str) -> None:
        if key in self._tasks:
            self._again.add(key)
        else:
            self._tasks[key] = spawn(self._work(key), name=f"{self._prefix}:{key}")

    def busy(self) -> int:
        return len(self._tasks)

    async def _work(self, key: str) -> None:
        try:
            while True:
                self._again.discard(key)
                try:
                    await self._handler(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s %s: reconcile failed", self._prefix, key)
                if key not in self._again:
                    return
        finally:
            self._tasks.pop(key, None)
            self._again.discard(key)

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks.values())
