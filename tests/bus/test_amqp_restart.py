"""RabbitMQ restarted mid-traffic (a private node of our own, SIGKILLed and started
again): both sides reconnect, resync, and every port ends ACTIVE exactly once."""

import asyncio
import logging

from vifwire.bus import BusError, NoEndpoint
from vifwire.bus.amqp import AmqpBus

PORTS = 120
log = logging.getLogger(__name__)


class Server:
    """The server's side, shaped like PortService: commit, then cast; set_status is
    conditional, so a repeated ports_up changes nothing a second time."""

    def __init__(self, bus: AmqpBus) -> None:
        self.bus = bus
        self.bound: list[str] = []
        self.status: dict[str, str] = {}
        self.events: dict[str, int] = {}
        self.all_active = asyncio.Event()
        self.failed = self.unrouted = 0

    async def bind(self, port_id: str) -> None:
        self.bound.append(port_id)  # the commit
        self.status[port_id] = "DOWN"
        try:
            await self.bus.cast("agent.h1", "port_bound", port_id=port_id)
        except NoEndpoint:  # the agent's queue is not back yet: its resync will find it
            self.unrouted += 1
        except BusError as exc:
            log.error("cast of %s failed: %s", port_id, exc)
            self.failed += 1

    async def get_host_ports(self, host: str) -> list[str]:
        return list(self.bound)

    async def ports_up(self, host: str, port_ids: list[str]) -> list[str]:
        for port_id in port_ids:
            if self.status.get(port_id) == "DOWN":
                self.status[port_id] = "ACTIVE"
                self.events[port_id] = self.events.get(port_id, 0) + 1
        if len(self.events) == PORTS:
            self.all_active.set()
        return port_ids


class Agent:
    """The agent's side: learns ports by cast or by full sync, reports them up with
    retries (as StatusReporter does) and resyncs after a reconnect."""

    def __init__(self, bus: AmqpBus) -> None:
        self.bus = bus
        self.known: set[str] = set()
        self.resyncs = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def port_bound(self, port_id: str) -> None:
        self._learn([port_id])

    def _learn(self, port_ids: list[str]) -> None:
        for port_id in set(port_ids) - self.known:
            self.known.add(port_id)
            task = asyncio.create_task(self._report_up(port_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _report_up(self, port_id: str) -> None:
        while True:
            try:
                await self.bus.call("server", "ports_up", host="h1", port_ids=[port_id],
                                    timeout=5)
                return
            except BusError:
                await asyncio.sleep(0.2)

    async def resync(self) -> None:
        self.resyncs += 1
        while True:
            try:
                self._learn(await self.bus.call("server", "get_host_ports", host="h1"))
                return
            except BusError:
                await asyncio.sleep(0.2)


async def test_broker_restart_mid_traffic_loses_nothing(private_broker) -> None:
    server_bus = AmqpBus(private_broker.url, publish_timeout=60, reconnect_interval=0.5)
    agent_bus = AmqpBus(private_broker.url, publish_timeout=60, reconnect_interval=0.5)
    await server_bus.start()
    await agent_bus.start()
    server, agent = Server(server_bus), Agent(agent_bus)
    server_reconnects = asyncio.Event()
    try:
        await server_bus.serve("server", server)
        await agent_bus.serve("agent.h1", agent)
        agent_bus.on_reconnect(agent.resync)
        server_bus.on_reconnect(server_reconnects.set)
        for i in range(PORTS):
            if i == PORTS // 3:
                await asyncio.to_thread(private_broker.kill)
                restart = asyncio.create_task(asyncio.to_thread(private_broker.start))
            await server.bind(f"p{i}")
            await asyncio.sleep(0.005)
        await restart
        await asyncio.wait_for(server.all_active.wait(), 90)
        await asyncio.wait_for(server_reconnects.wait(), 30)
        assert agent.resyncs >= 1
        assert set(server.status.values()) == {"ACTIVE"}
        assert server.events == {f"p{i}": 1 for i in range(PORTS)}
        assert agent.known == set(server.bound)
        assert server.failed == 0  # casts made while the broker was down waited for it
        log.info("casts that found no agent queue: %d", server.unrouted)
    finally:
        await agent_bus.stop()
        await server_bus.stop()


class Echo:
    """A server worker's endpoint: answers at once, counting what it served."""

    def __init__(self) -> None:
        self.served = 0

    async def ports_up(self, host: str, port_ids: list[str]) -> list[str]:
        self.served += 1
        return port_ids


WORKERS = 6


async def test_calls_waiting_across_a_broker_restart_are_answered_promptly(
        private_broker) -> None:
    """Calls made while the broker is down reach the queue as soon as the agent is
    back, and each worker takes one the moment its consumer is restored, while its
    other channels may still be coming back: every call is answered within seconds
    of the restart, not at its timeout (issue 9: a ports_up in flight waited 30 s).
    Six workers with one message each, so a worker whose reply channel comes back
    after its consumer (the order is arbitrary per process) cannot hide."""
    workers = [AmqpBus(private_broker.url, prefetch=1, reconnect_interval=2.0)
               for _ in range(WORKERS)]
    agent_bus = AmqpBus(private_broker.url, publish_timeout=60, reconnect_interval=0.2)
    endpoints = [Echo() for _ in workers]
    for bus, endpoint in zip(workers, endpoints, strict=True):
        await bus.start()
        await bus.serve("server", endpoint)
    await agent_bus.start()
    try:
        assert await agent_bus.call("server", "ports_up", host="h1", port_ids=["p0"]) == ["p0"]
        await asyncio.to_thread(private_broker.kill)
        calls = [asyncio.create_task(agent_bus.call(
            "server", "ports_up", host="h1", port_ids=[f"p{i}"], timeout=60))
            for i in range(1, 2 * WORKERS + 1)]
        await asyncio.to_thread(private_broker.start)
        back = asyncio.get_running_loop().time()
        done, _ = await asyncio.wait(calls, timeout=20)
        answered = [c.result() for c in done if c.exception() is None]
        waited = round(asyncio.get_running_loop().time() - back, 1)
        assert len(answered) == len(calls), (
            f"{len(calls) - len(answered)} of {len(calls)} calls unanswered {waited} s after "
            f"the broker was back; served per worker: {[e.served for e in endpoints]}")
    finally:
        for task in calls:
            task.cancel()
        await agent_bus.stop()
        for bus in workers:
            await bus.stop()
