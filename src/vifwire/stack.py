"""The embedded stack: the API server and this host's agent in one process.

Both share one asyncio loop and one in-process bus (or a RabbitMQ bus when the
settings name one), so a bind pushed by the server reaches the agent with no
network hop. Uvicorn runs programmatically; its own signal capture is disabled
so a SIGTERM stops the agent before the server and flushes the trace files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from vifwire.bus import make_bus
from vifwire.settings import Settings
from vifwire.trace import make_tracer

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The stack owns the signals; see run_stack.
        yield


async def run_stack(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run server + agent until `stop` is set or SIGTERM/SIGINT arrives."""
    from vifwire.agent.service import OvsAgent
    from vifwire.server.app import create_app

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)

    bus = make_bus(settings.bus_url)
    await bus.start()
    server_tracer = make_tracer("server", settings.trace_dir)
    agent_tracer = make_tracer("agent", settings.trace_dir)
    app = create_app(settings, bus, server_tracer)
    server = _Server(uvicorn.Config(app, host=settings.api_host, port=settings.api_port,
                                    log_level="warning", lifespan="on", access_log=False))
    serving = asyncio.create_task(server.serve(), name="stack:api")
    agent = None
    try:
        while not server.started:
            if serving.done():
                serving.result()  # re-raise why it could not start
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        agent = OvsAgent(settings, bus, agent_tracer)
        await agent.start()
        log.info("vifwire stack ready on %s (host %s)", settings.api_url, settings.host)
        stop_wait = asyncio.create_task(stop.wait(), name="stack:stop")
        await asyncio.wait({serving, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
    finally:
        if agent is not None:
            await agent.stop()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving
        await bus.stop()
        server_tracer.flush()
        agent_tracer.flush()
