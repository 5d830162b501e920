"""Stopping asyncio tasks for good, whatever they were awaiting.

On Python 3.11 `asyncio.wait_for` can swallow a cancellation that arrives as the
awaited operation completes (fixed in 3.12), so a task looping around one keeps
running after a single `cancel()`, and whoever awaits it next waits forever.
The stop paths of the agent, the OVS adapters, the notifier, the firewall caster
and the RabbitMQ bus cancel through `cancel_and_wait`, which cancels again until
the task is done.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

RECANCEL_S = 0.5


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel each task and wait until it is done, cancelling again every
    `RECANCEL_S` while it is not; a task's own failure is logged, not raised."""
    for task in tasks:
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=RECANCEL_S)
        if not task.cancelled() and task.exception() is not None:
            log.debug("task %s ended with %r", task.get_name(), task.exception())
