import asyncio
import threading

import pytest

from vifwire.bus import BusError, NoEndpoint
from vifwire.bus.local import LocalBus


class Echo:
    def __init__(self) -> None:
        self.casts: list[int] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    async def double(self, value: int) -> int:
        self.loop = asyncio.get_running_loop()
        return value * 2

    async def remember(self, value: int) -> None:
        self.casts.append(value)

    async def explode(self) -> None:
        raise ValueError("boom")

    async def slow(self) -> None:
        await asyncio.sleep(5)


async def test_call_returns_the_endpoint_reply() -> None:
    bus = LocalBus()
    await bus.serve("server", Echo())
    assert await bus.call("server", "double", value=21) == 42


async def test_casts_are_delivered_in_order() -> None:
    bus, echo = LocalBus(), Echo()
    await bus.serve("agent.h1", echo)
    for value in range(5):
        await bus.cast("agent.h1", "remember", value=value)
    await asyncio.sleep(0.01)
    assert echo.casts == [0, 1, 2, 3, 4]


async def test_unknown_topic_and_method_are_clear_errors() -> None:
    bus = LocalBus()
    await bus.serve("server", Echo())
    with pytest.raises(NoEndpoint, match=r"agent\.nowhere"):
        await bus.cast("agent.nowhere", "remember", value=1)
    with pytest.raises(BusError, match="no method 'missing'"):
        await bus.call("server", "missing")
    with pytest.raises(BusError, match="_private"):
        await bus.call("server", "_private")


async def test_call_failure_and_timeout_raise_bus_error() -> None:
    bus = LocalBus()
    await bus.serve("server", Echo())
    with pytest.raises(BusError, match="boom"):
        await bus.call("server", "explode")
    with pytest.raises(BusError, match="timed out"):
        await bus.call("server", "slow", timeout=0.05)


async def test_endpoint_on_another_loop_runs_on_its_own_loop() -> None:
    bus, echo = LocalBus(), Echo()
    other = asyncio.new_event_loop()
    ready = threading.Event()

    def run_other() -> None:
        asyncio.set_event_loop(other)
        other.run_until_complete(bus.serve("agent.h2", echo))
        ready.set()
        other.run_forever()

    thread = threading.Thread(target=run_other, daemon=True)
    thread.start()
    ready.wait(5)
    try:
        assert await bus.call("agent.h2", "double", value=4) == 8
        assert echo.loop is other
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(5)
        other.close()


async def test_endpoint_whose_loop_closed_is_no_endpoint() -> None:
    bus, echo = LocalBus(), Echo()
    other = asyncio.new_event_loop()
    thread = threading.Thread(
        target=lambda: other.run_until_complete(bus.serve("agent.h3", echo)))
    thread.start()
    thread.join(5)
    other.close()  # its owner stopped without unregistering, as the agent thread does
    with pytest.raises(NoEndpoint, match="stopped"):
        await bus.cast("agent.h3", "remember", value=1)
    with pytest.raises(NoEndpoint, match="stopped"):
        await bus.call("agent.h3", "double", value=1)
    assert echo.casts == []
