from vifwire.bus.base import SERVER_TOPIC, Bus, BusError, NoEndpoint, agent_topic


def make_bus(url: str) -> Bus:
    """The bus named by `url`: "local" for in-process, amqp:// for RabbitMQ."""
    if url == "local":
        from vifwire.bus.local import LocalBus

        return LocalBus()
    raise BusError(f"unsupported bus URL {url!r} (only 'local' is implemented so far)")


__all__ = ["SERVER_TOPIC", "Bus", "BusError", "NoEndpoint", "agent_topic", "make_bus"]
