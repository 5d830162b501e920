"""The bus on RabbitMQ (aio-pika): what `LocalBus` does, across processes and hosts.

Queues (all on the default exchange, named `<prefix>.<topic>`):
- a shared topic (`server`) is one durable queue consumed by every server worker:
  competing consumers, `prefetch` messages each, so whichever worker is free takes
  the next message. A message is acked only after its handler returned (and its
  reply was written, on the channel it came on), so a worker killed mid-handler
  leaves it to be redelivered to another worker: the handlers must be idempotent.
  Senders declare the queue too, so a request made before any worker is up waits
  for one.
- any other topic (`agent.<host>`) is an exclusive queue of the process serving it:
  it lives exactly as long as that process's connection, a second agent for the
  same host is refused, and its messages are handled one at a time, in order.
  They are not acked: the queue dies with the connection, unacked ones and all.
- replies go to an exclusive queue per bus, `<prefix>.reply.<uuid>`, matched by
  correlation id.

Calls to the shared topic go without publisher confirms (their queue is always
declared, the reply is the proof). Casts are published with `mandatory` and
publisher confirms: a cast to a topic whose queue does not exist comes back and
raises NoEndpoint, as on LocalBus;
`cast()` returns once the broker has the message, so two casts made one after
the other by one process reach the agent in that order (a bind, then a delete).
Why nothing is lost across an agent reconnect: the agent's queue exists before it
runs its full sync, and the server casts only after its commit. A cast that
found no queue (NoEndpoint) was therefore made before the queue, hence before
the sync, which then reads the commit; a cast sitting in a queue lost with the
agent's connection or the broker is older than the new queue, hence than the
resync the agent runs from `on_reconnect`. Messages are transient: a broker
restart drops them, and the resync covers casts while pending calls are sent
again after the reconnect (again: idempotent handlers).

While the connection is down, a publish waits for the robust connection to come
back (at most `publish_timeout`, then BusError), so a short broker outage slows
casts and calls but loses none.

Threads: the embedded stack shares one bus between the server's loop and the
agent's thread. All AMQP work runs on the loop that called `start()`; a call or
cast from another loop is handed over, and a handler runs on the loop that
registered its endpoint, as on LocalBus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aiormq import spec

from vifwire.aio import cancel_and_wait
from vifwire.bus.base import SERVER_TOPIC, Bus, BusError, NoEndpoint
from vifwire.bus.loops import EndpointGone, Hook, dispatch, run_on
from vifwire.bus.wire import reason, redact, reply_body, request_body, unpack_reply, unpack_request

log = logging.getLogger(__name__)

T = TypeVar("T")
# What a publish raises when its channel or connection went away under it.
_LINK_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError)


@dataclass
class _Served:
    topic: str
    endpoint: object
    loop: asyncio.AbstractEventLoop
    shared: bool
    channel: AbstractRobustChannel
    queue: AbstractQueue
    inbox: asyncio.Queue[AbstractIncomingMessage] = field(default_factory=asyncio.Queue)
    consumer_tag: str = ""


@dataclass
class _Pending:
    topic: str
    body: bytes
    future: asyncio.Future[Any]
    sent: bool = False  # published once: a reconnect may have lost it or its reply


class AmqpBus(Bus):
    def __init__(self, url: str, *, prefix: str = "vifwire",
                 shared_topics: frozenset[str] = frozenset({SERVER_TOPIC}),
                 prefetch: int = 8, publish_timeout: float = 10.0,
                 reconnect_interval: float = 1.0, connect_timeout: float = 10.0,
                 drain_timeout: float = 5.0) -> None:
        self._url = url
        self._redacted = redact(url)
        self._prefix = prefix
        self._shared = shared_topics
        self._prefetch = prefetch
        self._publish_timeout = publish_timeout
        self._reconnect_interval = reconnect_interval
        self._connect_timeout = connect_timeout
        self._drain_timeout = drain_timeout
        self._reply_to = f"{prefix}.reply.{uuid.uuid4().hex}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: AbstractRobustConnection | None = None
        self._pub: AbstractRobustChannel | None = None  # confirms: casts and requests
        self._fast: AbstractRobustChannel | None = None  # no confirms: calls to shared topics
        self._served: dict[str, _Served] = {}
        self._declared: set[str] = set()  # shared queues this bus sends to
        self._pending: dict[str, _Pending] = {}
        self._hooks: list[tuple[Hook, asyncio.AbstractEventLoop]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handling: set[asyncio.Task[Any]] = set()  # shared-topic handlers under way
        self._stopping = False

    @property
    def url(self) -> str:
        """The broker URL without its password, for logs and errors."""
        return self._redacted

    def _queue(self, topic: str) -> str:
        return f"{self._prefix}.{topic}"

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            with _quiet("aiormq.connection", "aio_pika.robust_connection"):
                self._conn = await aio_pika.connect_robust(
                    self._url, timeout=self._connect_timeout,
                    reconnect_interval=self._reconnect_interval,
                    client_properties={"connection_name": f"vifwire {self._reply_to}"})
        except Exception as exc:  # refused, DNS, auth, timeout: one line for the CLI
            raise BusError(f"cannot connect to RabbitMQ at {self.url}: "
                           f"{reason(exc)}") from None
        self._pub = await self._channel(publisher_confirms=True, on_return_raises=True)
        self._fast = await self._channel(publisher_confirms=False)
        replies = await self._channel(publisher_confirms=False)
        queue = await replies.declare_queue(self._reply_to, exclusive=True, auto_delete=True)
        await queue.consume(self._on_reply, no_ack=True)
        self._conn.reconnect_callbacks.add(self._on_reconnected)

    async def _channel(self, **kwargs: Any) -> AbstractRobustChannel:
        assert self._conn is not None
        channel = await self._conn.channel(**kwargs)
        assert isinstance(channel, aio_pika.RobustChannel)
        return channel

    async def stop(self) -> None:
        if self._conn is None or self._stopping:
            return
        self._stopping = True
        await self._here(self._stop())

    async def _stop(self) -> None:
        assert self._conn is not None
        for served in self._served.values():
            try:  # no new deliveries; unacked ones go back to the queue with the channel
                await asyncio.wait_for(served.queue.cancel(served.consumer_tag), 2.0)
            except Exception:  # closing anyway
                log.debug("cancel consumer of %s", served.topic, exc_info=True)
        if self._handling:  # let handlers under way commit, answer and ack
            await asyncio.wait(self._handling, timeout=self._drain_timeout)
        await cancel_and_wait(*self._tasks)
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(BusError("the bus stopped"))
        self._pending.clear()
        self._served.clear()
        await self._conn.close()

    def on_reconnect(self, callback: Hook) -> None:
        """Run `callback` (on the caller's loop) after every reconnection to the
        broker, once this bus's queues and consumers are back."""
        self._hooks.append((callback, asyncio.get_running_loop()))

    async def _on_reconnected(self, _connection: object) -> None:
        log.warning("reconnected to RabbitMQ at %s; resending the calls in flight", self.url)
        for correlation_id, pending in list(self._pending.items()):
            if pending.sent and not pending.future.done():  # lost with the link, maybe
                self._spawn(self._resend(correlation_id, pending))
        for hook, loop in self._hooks:
            run_on(loop, hook)

    async def _resend(self, correlation_id: str, pending: _Pending) -> None:
        try:
            await self._publish(pending.topic, pending.body, correlation_id=correlation_id)
        except BusError as exc:
            if not pending.future.done():
                pending.future.set_exception(exc)

    # -- serving -------------------------------------------------------------

    async def serve(self, topic: str, endpoint: object) -> None:
        await self._here(self._serve(topic, endpoint, asyncio.get_running_loop()))

    async def _serve(self, topic: str, endpoint: object,
                     loop: asyncio.AbstractEventLoop) -> None:
        if topic in self._served:
            raise BusError(f"topic {topic!r} is already served by this process")
        shared = topic in self._shared
        channel = await self._channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._prefetch)
        try:
            queue = await channel.declare_queue(self._queue(topic), durable=shared,
                                                exclusive=not shared)
        except aiormq.exceptions.ChannelLockedResource:
            await channel.close()
            raise BusError(f"another process already serves {topic!r} on {self.url}") from None
        served = _Served(topic, endpoint, loop, shared, channel, queue)
        self._served[topic] = served
        if shared:
            self._declared.add(topic)

            async def deliver(message: AbstractIncomingMessage) -> None:
                # A task of ours, not aiormq's: a lost channel must not cancel a
                # handler halfway; its ack fails and the broker redelivers.
                task = self._spawn(self._handle(served, message))
                self._handling.add(task)
                task.add_done_callback(self._handling.discard)
        else:
            self._spawn(self._drain(served))

            async def deliver(message: AbstractIncomingMessage) -> None:
                served.inbox.put_nowait(message)
        # An exclusive queue dies with our connection, unacked messages and all:
        # acking its messages would buy nothing and cost a frame each.
        served.consumer_tag = await queue.consume(deliver, no_ack=not shared)

    async def _drain(self, served: _Served) -> None:
        while True:  # one message at a time keeps the order of casts to one agent
            await self._handle(served, await served.inbox.get())

    async def _handle(self, served: _Served, message: AbstractIncomingMessage) -> None:
        try:
            method, kwargs = unpack_request(message.body)
            result = await dispatch(served.endpoint, served.topic, served.loop, method, kwargs)
            error = None
        except EndpointGone as exc:
            result, error = None, str(exc)
            if self._served.get(served.topic) is served:  # later senders get NoEndpoint
                del self._served[served.topic]
                self._spawn(self._unserve(served))
        except Exception as exc:  # the caller gets it as BusError
            result, error = None, f"{type(exc).__name__}: {exc}"
            if message.reply_to is None:
                log.error("cast %s to %s failed", message.type, served.topic, exc_info=True)
        try:
            if message.reply_to is not None:
                # On the channel that delivered the request, not on one of the bus's
                # own: after a reconnect the consumers' channels may be restored (and
                # deliver) before the others, whose publishes fail until then; the
                # request, neither answered nor acked on a live channel, was never
                # redelivered and its caller waited out its timeout (issue 9). This
                # channel is open, and if it dies the broker redelivers the request.
                await message.channel.basic_publish(
                    reply_body(result, error), routing_key=message.reply_to,
                    properties=spec.Basic.Properties(correlation_id=message.correlation_id))
            if served.shared:
                await message.ack()  # only now: a crash before this gets it redelivered
        except Exception:  # the delivering channel is gone: the broker redelivers it
            log.info("could not answer/ack on %s; it will be redelivered", served.topic,
                     exc_info=True)

    async def _unserve(self, served: _Served) -> None:
        """Drop the queue of an endpoint whose loop ended without stopping the bus
        (the embedded agent's thread): an exclusive queue outlives its channel."""
        try:
            await served.queue.cancel(served.consumer_tag)
            if not served.shared:
                await served.queue.delete(if_unused=False, if_empty=False)
            await served.channel.close()
        except Exception:  # the link is going anyway
            log.debug("unserve %s", served.topic, exc_info=True)

    # -- sending -------------------------------------------------------------

    async def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        await self._here(self._publish(topic, request_body(method, kwargs), method=method))

    async def call(self, topic: str, method: str, timeout: float = 30.0, **kwargs: Any) -> Any:
        return await self._here(self._call(topic, method, timeout, kwargs))

    async def _call(self, topic: str, method: str, timeout: float,
                    kwargs: dict[str, Any]) -> Any:
        assert self._loop is not None
        correlation_id = uuid.uuid4().hex
        pending = _Pending(topic, request_body(method, kwargs), self._loop.create_future())
        self._pending[correlation_id] = pending
        try:
            async with asyncio.timeout(timeout):
                await self._publish(topic, pending.body, method=method,
                                    correlation_id=correlation_id)
                pending.sent = True
                reply = await pending.future
        except TimeoutError:
            raise BusError(f"{topic}.{method} timed out after {timeout}s") from None
        finally:
            self._pending.pop(correlation_id, None)
        return unpack_reply(reply, f"{topic}.{method}")

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        pending = self._pending.get(message.correlation_id or "")
        if pending is not None and not pending.future.done():  # late or duplicate: dropped
            pending.future.set_result(message.body)

    async def _publish(self, topic: str, body: bytes, *, method: str = "",
                       correlation_id: str | None = None) -> None:
        if self._pub is None:
            raise BusError("the bus is not started")
        # aiormq's publish under aio-pika's: aio_pika.Message costs ~90 attribute
        # checks per message; these properties are all a message needs here.
        properties = spec.Basic.Properties(
            delivery_mode=1, message_type=method or None, correlation_id=correlation_id,
            reply_to=self._reply_to if correlation_id else None)
        # A call to a shared topic needs no confirm: its queue is declared (it cannot
        # bounce), its reply is the proof, and a reconnect sends it again.
        confirmed = not (correlation_id and topic in self._shared)
        channel = self._pub if confirmed else self._fast
        assert channel is not None
        failure = "timed out"
        try:
            async with asyncio.timeout(self._publish_timeout):
                while True:
                    await channel.ready()  # the link is down: wait for the robust reconnect
                    try:
                        if topic in self._shared and topic not in self._declared:
                            # Inside the wait: a first call made while the link is
                            # down waits for it too, instead of failing at once.
                            await self._pub.ready()
                            await self._pub.declare_queue(self._queue(topic), durable=True)
                            self._declared.add(topic)
                        underlay = await channel.get_underlay_channel()
                        await underlay.basic_publish(body, routing_key=self._queue(topic),
                                                     properties=properties,
                                                     mandatory=confirmed)
                        return  # confirmed (casts): the broker has it
                    except aiormq.exceptions.PublishError:
                        raise NoEndpoint(f"no endpoint serves topic {topic!r}") from None
                    except _LINK_ERRORS as exc:  # lost with the link: send it again
                        failure = reason(exc)
                        if self._stopping:
                            break
                        await asyncio.sleep(0.05)
        except TimeoutError:
            pass
        raise BusError(f"could not send {method or 'message'} to {topic!r} on {self.url}: "
                       f"{failure}")

    # -- threads and tasks ---------------------------------------------------

    async def _here(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the bus's loop, from whichever loop awaits it."""
        if self._loop is None:
            coro.close()
            raise BusError("the bus is not started")
        if asyncio.get_running_loop() is self._loop:
            return await coro
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the bus's loop is closed
            coro.close()
            raise BusError("the bus stopped") from None
        return await asyncio.wrap_future(future)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Mute these loggers for a moment: a failed first connect is our one error line."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
