"""gather_named: a failing VM task stops its siblings before the error reaches teardown."""

from __future__ import annotations

import asyncio

import pytest

from vifwire.compute.storm import gather_named


async def test_one_failure_cancels_and_awaits_the_others() -> None:
    finished: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            finished.append("slow")

    async def broken() -> None:
        await asyncio.sleep(0)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await gather_named("test", [slow(), broken()])
    assert finished == ["slow"]  # unwound before gather_named returned
