"""The message bus between the server and the agents, as oslo.messaging shapes it.

Two verbs carry everything: `cast` (fire and forget) and `call` (request, one
reply). A topic is served by exactly one endpoint object per process; a method
is an async function of that object named like the message. `server` is the
server's topic; `agent.<host>` is each agent's.

The in-process bus (`vifwire.bus.local.LocalBus`) and the RabbitMQ bus
(`vifwire.bus.amqp`) implement this one interface, so neither the server nor the
agent knows which one carries its messages.
Messages are plain JSON-able dicts so every transport can serialize them.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

SERVER_TOPIC = "server"


def agent_topic(host: str) -> str:
    return f"agent.{host}"


class BusError(Exception):
    """A message could not be delivered or the remote endpoint failed."""


class NoEndpoint(BusError):
    """Nobody serves the topic (e.g. the agent of that host is not running)."""


class Endpoint(Protocol):
    """Any object: its public async methods are the topic's messages."""


class Bus(abc.ABC):
    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def serve(self, topic: str, endpoint: object) -> None:
        """Deliver messages for `topic` to methods of `endpoint`."""

    @abc.abstractmethod
    async def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        """Send without waiting for a reply. Raises NoEndpoint if nobody serves it."""

    @abc.abstractmethod
    async def call(self, topic: str, method: str, timeout: float = 30.0, **kwargs: Any) -> Any:
        """Send and return the endpoint's reply; raises BusError on failure or timeout."""

    def on_reconnect(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Run `callback` on the caller's loop each time the bus got its broker back
        (its queues and consumers restored), so the caller resyncs what it may have
        missed. The in-process bus never loses its link: it never calls it."""
        return None
