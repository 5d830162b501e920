"""In-process bus: a dict of endpoints, dispatch by method name.

Endpoints may live on different event loops (threads); a message runs on the
loop that registered its endpoint, so a handler never races with its owner.
Casts are delivered as tasks, in order per topic, so a slow handler never
blocks the sender.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from vifwire.bus.base import Bus, BusError, NoEndpoint

log = logging.getLogger(__name__)


@dataclass
class _Registration:
    endpoint: object
    loop: asyncio.AbstractEventLoop


class LocalBus(Bus):
    def __init__(self) -> None:
        self._endpoints: dict[str, _Registration] = {}
        self._tasks: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._endpoints.clear()

    async def serve(self, topic: str, endpoint: object) -> None:
        self._endpoints[topic] = _Registration(endpoint, asyncio.get_running_loop())

    def _handler(self, topic: str, method: str) -> tuple[Any, asyncio.AbstractEventLoop]:
        registration = self._endpoints.get(topic)
        if registration is None:
            raise NoEndpoint(f"no endpoint serves topic {topic!r}")
        handler = getattr(registration.endpoint, method, None)
        if method.startswith("_") or handler is None:
            raise BusError(f"topic {topic!r} has no method {method!r}")
        return handler, registration.loop

    def _submit(self, topic: str, method: str, kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        handler, loop = self._handler(topic, method)
        here = asyncio.get_running_loop()
        if loop is here:
            future: asyncio.Future[Any] = loop.create_task(handler(**kwargs), name=f"bus:{method}")
        else:
            coro = handler(**kwargs)
            try:
                remote = asyncio.run_coroutine_threadsafe(coro, loop)
            except RuntimeError as exc:  # the endpoint's loop is closed: its owner is gone
                coro.close()
                raise NoEndpoint(f"the endpoint of topic {topic!r} has stopped") from exc
            future = asyncio.wrap_future(remote)
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)
        return future

    async def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        future = self._submit(topic, method, kwargs)
        future.add_done_callback(_log_failure)

    async def call(self, topic: str, method: str, timeout: float = 30.0, **kwargs: Any) -> Any:
        future = self._submit(topic, method, kwargs)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise BusError(f"{topic}.{method} timed out after {timeout}s") from exc
        except BusError:
            raise
        except Exception as exc:
            raise BusError(f"{topic}.{method} failed: {exc}") from exc


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("cast handler failed", exc_info=future.exception())
