"""AmqpBus against the shared RabbitMQ, in a vhost of this session's own."""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import pytest

from vifwire.bus import BusError, NoEndpoint, make_bus
from vifwire.bus.amqp import AmqpBus
from vifwire.bus.local import LocalBus


class Echo:
    def __init__(self) -> None:
        self.casts: list[int] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.got = asyncio.Event()
        self.want = 0

    async def double(self, value: int) -> int:
        self.loop = asyncio.get_running_loop()
        return value * 2

    async def remember(self, value: int) -> None:
        if value % 3 == 0:
            await asyncio.sleep(0)  # a handler that yields must not let the next one pass it
        self.casts.append(value)
        if len(self.casts) >= self.want:
            self.got.set()

    async def explode(self) -> None:
        raise ValueError("boom")

    async def slow(self) -> None:
        await asyncio.sleep(5)


@pytest.fixture
async def new_bus(amqp_url: str, prefix: str) -> AsyncIterator[Callable[[], AmqpBus]]:
    buses: list[AmqpBus] = []

    async def make() -> AmqpBus:
        bus = AmqpBus(amqp_url, prefix=prefix)
        await bus.start()
        buses.append(bus)
        return bus
    yield make  # type: ignore[misc]
    for bus in buses:
        await bus.stop()


async def test_call_between_two_processes_worth_of_buses(new_bus) -> None:
    server, agent = await new_bus(), await new_bus()
    await server.serve("server", Echo())
    assert await agent.call("server", "double", value=21) == 42
    assert await server.call("server", "double", value=2) == 4


async def test_casts_to_one_agent_arrive_in_order(new_bus) -> None:
    server, agent = await new_bus(), await new_bus()
    echo = Echo()
    echo.want = 200
    await agent.serve("agent.h1", echo)
    await asyncio.gather(*(server.cast("agent.h1", "remember", value=v) for v in range(100)))
    for value in range(100, 200):
        await server.cast("agent.h1", "remember", value=value)
    await asyncio.wait_for(echo.got.wait(), 10)
    assert echo.casts == list(range(200))


async def test_unknown_topic_and_method_are_clear_errors(new_bus) -> None:
    bus = await new_bus()
    await bus.serve("server", Echo())
    with pytest.raises(NoEndpoint, match=r"agent\.nowhere"):
        await bus.cast("agent.nowhere", "remember", value=1)
    with pytest.raises(NoEndpoint, match=r"agent\.nowhere"):
        await bus.call("agent.nowhere", "double", value=1)
    with pytest.raises(BusError, match="no method 'missing'"):
        await bus.call("server", "missing")
    with pytest.raises(BusError, match="_private"):
        await bus.call("server", "_private")
    with pytest.raises(BusError, match="not JSON-able"):
        await bus.cast("server", "remember", value=object())


async def test_call_failure_and_timeout_raise_bus_error(new_bus) -> None:
    bus = await new_bus()
    await bus.serve("server", Echo())
    with pytest.raises(BusError, match="boom"):
        await bus.call("server", "explode")
    with pytest.raises(BusError, match="timed out"):
        await bus.call("server", "slow", timeout=0.2)


async def test_a_call_waits_in_the_server_queue_for_a_worker(new_bus) -> None:
    agent = await new_bus()
    reply = asyncio.create_task(agent.call("server", "double", value=5, timeout=10))
    await asyncio.sleep(0.2)  # the request sits in the durable queue meanwhile
    assert not reply.done()
    server = await new_bus()
    await server.serve("server", Echo())
    assert await reply == 10


async def test_a_worker_answers_on_the_channel_that_delivered_the_call(new_bus) -> None:
    """After a reconnect a worker's consumer may deliver before its other channels
    are restored (issue 9: the call, neither answered nor acked, waited out its
    timeout). Closing the worker's own publishing channel stands for that moment:
    the call is still answered, and promptly."""
    server, agent = await new_bus(), await new_bus()
    await server.serve("server", Echo())
    assert server._fast is not None
    await server._fast.close()  # a channel not yet restored after a reconnect
    assert await agent.call("server", "double", value=4, timeout=5) == 8


async def test_one_agent_per_host(new_bus) -> None:
    first, second = await new_bus(), await new_bus()
    await first.serve("agent.h1", Echo())
    with pytest.raises(BusError, match=r"another process already serves 'agent\.h1'"):
        await second.serve("agent.h1", Echo())
    assert await first.call("agent.h1", "double", value=1) == 2


async def test_an_agent_gone_is_no_endpoint(new_bus, amqp_url: str, prefix: str) -> None:
    server = await new_bus()
    agent = AmqpBus(amqp_url, prefix=prefix)
    await agent.start()
    await agent.serve("agent.h2", Echo())
    await server.cast("agent.h2", "remember", value=1)
    await agent.stop()
    with pytest.raises(NoEndpoint):
        await server.cast("agent.h2", "remember", value=2)


async def test_workers_compete_for_the_server_topic(new_bus) -> None:
    class Who:
        def __init__(self, name: str) -> None:
            self.name = name

        async def who(self) -> str:
            await asyncio.sleep(0.05)  # busy: the next request goes to the other worker
            return self.name

    one, two, agent = await new_bus(), await new_bus(), await new_bus()
    await one.serve("server", Who("one"))
    await two.serve("server", Who("two"))
    answers = await asyncio.gather(*(agent.call("server", "who") for _ in range(20)))
    assert set(answers) == {"one", "two"}


async def test_a_stopping_worker_finishes_the_handler_it_started(new_bus, amqp_url, prefix) -> None:
    class Slowish:
        def __init__(self) -> None:
            self.started = asyncio.Event()

        async def work(self) -> str:
            self.started.set()
            await asyncio.sleep(0.3)
            return "done"

    agent = await new_bus()
    worker, endpoint = AmqpBus(amqp_url, prefix=prefix), Slowish()
    await worker.start()
    await worker.serve("server", endpoint)
    reply = asyncio.create_task(agent.call("server", "work", timeout=10))
    await endpoint.started.wait()
    await worker.stop()  # SIGTERM of a server worker: no new messages, this one answered
    assert await reply == "done"


async def test_endpoint_on_another_loop_runs_on_its_own_loop(new_bus) -> None:
    """The embedded stack: the agent's thread serves and calls through the server's bus."""
    bus, echo = await new_bus(), Echo()
    await bus.serve("server", Echo())
    other = asyncio.new_event_loop()
    ready = threading.Event()

    def run_other() -> None:
        asyncio.set_event_loop(other)
        other.run_until_complete(bus.serve("agent.h3", echo))
        ready.set()
        other.run_forever()

    thread = threading.Thread(target=run_other, daemon=True)
    thread.start()
    assert await asyncio.to_thread(ready.wait, 10)  # the bus loop must keep running
    try:
        assert await bus.call("agent.h3", "double", value=4) == 8
        assert echo.loop is other
        from_thread = asyncio.run_coroutine_threadsafe(
            bus.call("server", "double", value=3), other)
        assert await asyncio.wrap_future(from_thread) == 6
    finally:
        other.call_soon_threadsafe(other.stop)
        await asyncio.to_thread(thread.join, 5)
        other.close()


async def test_endpoint_whose_loop_closed_is_no_endpoint(new_bus) -> None:
    bus, echo = await new_bus(), Echo()
    other = asyncio.new_event_loop()
    thread = threading.Thread(
        target=lambda: other.run_until_complete(bus.serve("agent.h4", echo)))
    thread.start()
    await asyncio.to_thread(thread.join, 10)
    other.close()  # its owner stopped without unregistering, as the agent thread does
    with pytest.raises(BusError, match="stopped"):
        await bus.call("agent.h4", "double", value=1)
    for _ in range(100):  # its queue goes: later casts are NoEndpoint, as on LocalBus
        try:
            await bus.cast("agent.h4", "remember", value=1)
        except NoEndpoint:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("casts to a gone endpoint are still accepted")
    assert echo.casts == []


async def test_unreachable_broker_is_one_line_without_the_password() -> None:
    bus = AmqpBus("amqp://guest:s3cret@127.0.0.1:1/", connect_timeout=5)
    with pytest.raises(BusError) as caught:
        await bus.start()
    message = str(caught.value)
    assert "amqp://guest:***@127.0.0.1:1/" in message
    assert "s3cret" not in message and "\n" not in message


async def test_wrong_password_is_a_bus_error(amqp_url: str) -> None:
    bus = AmqpBus(amqp_url.replace("guest:guest", "guest:wrong"), connect_timeout=5)
    with pytest.raises(BusError, match=r"guest:\*\*\*@"):
        await bus.start()


def test_make_bus_picks_the_transport() -> None:
    assert isinstance(make_bus(None), LocalBus)
    assert isinstance(make_bus("local"), LocalBus)
    assert isinstance(make_bus("local://"), LocalBus)
    assert isinstance(make_bus("amqp://guest:guest@127.0.0.1/", prefix="x"), AmqpBus)
    named = make_bus("amqp://guest:guest@127.0.0.1/vh?heartbeat=30&prefix=stack1")
    assert isinstance(named, AmqpBus)
    assert named._prefix == "stack1" and named._url == "amqp://guest:guest@127.0.0.1/vh?heartbeat=30"
    with pytest.raises(BusError, match=r"kafka://u:\*\*\*@h"):
        make_bus("kafka://u:pw@h/")
