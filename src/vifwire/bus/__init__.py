from typing import Any

from vifwire.bus.base import SERVER_TOPIC, Bus, BusError, NoEndpoint, agent_topic


def make_bus(url: str | None = None, **options: Any) -> Bus:
    """The bus named by `url`: in-process for none, "local" or local://; RabbitMQ for
    amqp:// and amqps:// (`options` go to AmqpBus: prefix, prefetch, timeouts).

    Queue names start with "vifwire."; `?prefix=NAME` in the URL changes that, so
    two deployments can share a vhost (a vhost each is RabbitMQ's usual way)."""
    if not url or url == "local" or url.startswith("local://"):
        from vifwire.bus.local import LocalBus

        return LocalBus()
    if url.startswith(("amqp://", "amqps://")):
        from vifwire.bus.amqp import AmqpBus
        from vifwire.bus.wire import split_prefix

        url, prefix = split_prefix(url)
        if prefix is not None:
            options.setdefault("prefix", prefix)
        return AmqpBus(url, **options)
    from vifwire.bus.wire import redact

    raise BusError(f"unsupported bus URL {redact(url)!r}: use local:// or amqp://user:pass@host/")


__all__ = ["SERVER_TOPIC", "Bus", "BusError", "NoEndpoint", "agent_topic", "make_bus"]
