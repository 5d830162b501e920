"""Is an outside database or broker reachable? One clear line when it is not.

Asked before a rig starts anything, so `vifwire cluster up --bus-url ...` with a
broker that is down fails at once and leaves nothing behind.
"""

from __future__ import annotations

import asyncio

from vifwire.cluster.state import ClusterError

TIMEOUT_S = 10.0


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def check_broker(url: str) -> None:
    import aio_pika

    async def connect() -> None:
        connection = await aio_pika.connect(url, timeout=TIMEOUT_S)
        await connection.close()

    shown = _shown(url)
    try:
        asyncio.run(asyncio.wait_for(connect(), TIMEOUT_S))
    except TimeoutError as exc:
        raise ClusterError(f"RabbitMQ at {shown} is not reachable: no answer in "
                           f"{TIMEOUT_S:.0f}s") from exc
    except Exception as exc:  # aio-pika raises OSError, AMQP errors, ValueError on bad URLs
        raise ClusterError(f"RabbitMQ at {shown} is not reachable: {_first_line(exc)}") from exc


def check_database(url: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ClusterError(f"database URL {url!r} is not a SQLAlchemy URL") from exc
    shown = parsed.render_as_string(hide_password=True)
    try:
        engine = create_engine(parsed, pool_pre_ping=False)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except (SQLAlchemyError, OSError, ImportError) as exc:
        raise ClusterError(f"database {shown} is not reachable: {_first_line(exc)}") from exc


def _shown(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
