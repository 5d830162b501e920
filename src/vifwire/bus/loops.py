"""Where bus work runs when endpoints live on several event loops (threads).

A handler runs on the loop that registered its endpoint, and a reconnect hook on
the loop that registered it, so neither races with its owner's other work (the
embedded stack runs the agent on a thread of its own).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vifwire.bus.base import BusError, NoEndpoint

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None] | None]

_hook_tasks: set[asyncio.Task[Any]] = set()  # held until done, or the loop may drop them


class EndpointGone(NoEndpoint):
    """The loop that registered the endpoint is closed."""


async def dispatch(endpoint: object, topic: str, loop: asyncio.AbstractEventLoop,
                   method: str, kwargs: dict[str, Any]) -> Any:
    """Run endpoint.method(**kwargs) on `loop` and return its result."""
    handler = getattr(endpoint, method, None)
    if method.startswith("_") or handler is None:
        raise BusError(f"topic {topic!r} has no method {method!r}")
    if loop is asyncio.get_running_loop():
        return await handler(**kwargs)
    coro = handler(**kwargs)
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the endpoint's loop is closed: its owner is gone
        coro.close()
        raise EndpointGone(f"the endpoint of topic {topic!r} has stopped") from None
    return await asyncio.wrap_future(future)


def run_on(loop: asyncio.AbstractEventLoop, hook: Hook) -> None:
    """Call `hook` on `loop` (a coroutine it returns becomes a task there)."""
    def run() -> None:
        result = hook()
        if asyncio.iscoroutine(result):
            task = loop.create_task(result)
            _hook_tasks.add(task)
            task.add_done_callback(_hook_tasks.discard)
    try:
        loop.call_soon_threadsafe(run)
    except RuntimeError:  # that loop is closed: its owner is gone
        log.debug("reconnect hook of a closed loop skipped")
