"""The embedded stack: the API server and this host's agent in one process.

Both share one asyncio loop and one in-process bus (or a RabbitMQ bus when the
settings name one), so a bind pushed by the server reaches the agent with no
network hop. Uvicorn runs programmatically; its own signal capture is disabled
so a SIGTERM stops the agent before the server and flushes the trace files.

The agent runs on a thread of its own with its own event loop (the bus hands
messages across loops), so its OVSDB events never queue behind API requests,
and its threads carry the OS name "vw-agent", so the profiler can tell the
agent's CPU from the server's within the one process.

Both loops are uvloop's: per request and per cross-thread hand-off it costs
well under asyncio's own loop (bench numbers in the session notes).

Profiling is always on and cheap: both components mark stages into bounded
in-memory tracers and a SQL probe counts statements. `GET /_vifwire/trace?since=T`
returns them, so `vifwire boot --profile` can read a stack it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator

import uvicorn
import uvloop
from fastapi import FastAPI

from vifwire.api.http_protocol import server_config
from vifwire.bus import Bus, make_bus
from vifwire.profile.sql import SqlProbe, install_sql_probe
from vifwire.settings import DATABASE_FILE, Settings
from vifwire.trace import Tracer

TRACE_ROUTE = "/_vifwire/trace"
SWITCH_INTERVAL_S = 0.0005
PR_SET_NAME = 15

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The stack cannot start: a dependency (database, OVS) is unreachable or broken."""


def check_database(url: str) -> None:
    """Connect once, so an unreachable database is one clear line, not a traceback."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from vifwire.db.engine import make_engine

    shown = make_url(url).render_as_string(hide_password=True)
    try:
        engine = make_engine(url)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except (SQLAlchemyError, OSError, ImportError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StartupError(f"database {shown} is not reachable: {reason}") from exc


AGENT_THREAD_NAME = "vw-agent"


def name_this_thread(name: str) -> None:
    """Set the OS-level name of the calling thread (threads it starts inherit it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


class AgentThread:
    """The OVS agent on its own thread and event loop."""

    def __init__(self, settings: Settings, bus: Bus, tracer: Tracer) -> None:
        from vifwire.agent.service import OvsAgent

        self.agent = OvsAgent(settings, bus, tracer)
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=AGENT_THREAD_NAME, daemon=True)

    def _run(self) -> None:
        name_this_thread(AGENT_THREAD_NAME)
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    async def start(self) -> None:
        """Start the agent; if it cannot start (it let go of OVSDB), its thread ends too."""
        self._thread.start()
        try:
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self.agent.start(), self.loop))
        except BaseException:
            await self._end_thread()
            raise

    async def _end_thread(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join, 10)

    async def stop(self) -> None:
        try:
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self.agent.stop(), self.loop))
        finally:
            await self._end_thread()


def run_forever(settings: Settings) -> None:
    """Run the stack on a uvloop event loop until SIGTERM/SIGINT (the `stack` command)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_stack(settings))


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The stack owns the signals; see run_stack.
        yield


async def run_stack(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run server + agent until `stop` is set or SIGTERM/SIGINT arrives."""
    from vifwire.app import create_app
    from vifwire.server.notifier import check_nova_url

    # The OVSDB IDL threads and the loop hand each port to one another several
    # times; at the default 5 ms switch interval a busy thread makes each hop wait.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)

    check_nova_url(settings.nova_url)
    adopt_database_from_run_dir(settings)
    check_database(settings.effective_database_url)
    bus = make_bus(settings.bus_url)
    await bus.start()
    server_tracer = Tracer("server", settings.trace_dir)
    agent_tracer = Tracer("agent", settings.trace_dir)
    probes: list[SqlProbe] = []
    agent = None
    try:
        app = create_app(settings, bus, server_tracer)
        add_trace_route(app, (server_tracer, agent_tracer), probes)
        server = _Server(server_config(app, settings.api_host, settings.api_port))
        serving = asyncio.create_task(server.serve(), name="stack:api")
        try:
            while not server.started:
                if serving.done():
                    serving.result()  # re-raise why it could not start
                    raise RuntimeError("the API server stopped while starting")
                await asyncio.sleep(0.01)
            probes.append(install_sql_probe(app.state.services.context.engine))
            starting = AgentThread(settings, bus, agent_tracer)
            await starting.start()  # a failed start cleans up after itself
            agent = starting
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
    finally:
        await bus.stop()
        server_tracer.flush()
        agent_tracer.flush()
        if settings.trace_dir is not None:
            for probe in probes:
                probe.write(settings.trace_dir / f"sql-server-{os.getpid()}.json")


def adopt_database_from_run_dir(settings: Settings) -> None:
    """Earlier versions kept the embedded database in the run dir, which is a tmpfs
    on Debian; move one found there to the state dir, where it survives a reboot."""
    if settings.database_url or settings.effective_state_dir == settings.run_dir:
        return
    old, new = settings.run_dir / DATABASE_FILE, settings.effective_state_dir / DATABASE_FILE
    if not old.exists() or new.exists():
        return
    new.parent.mkdir(parents=True, exist_ok=True)
    # Across filesystems (tmpfs to disk) a move is a copy: each file is copied
    # under a temporary name, synced and renamed, the main file last, since it
    # is what marks the move done. A crash midway leaves the old files whole,
    # and the next start moves them again.
    moved = []
    for suffix in ("-wal", "-shm", ""):
        source = old.with_name(old.name + suffix)
        if not source.exists():
            continue
        target = new.with_name(new.name + suffix)
        partial = target.with_name(target.name + ".moving")
        shutil.copy2(source, partial)
        with partial.open("rb+") as copied:
            os.fsync(copied.fileno())
        partial.replace(target)
        moved.append(source)
    for source in moved:
        source.unlink()
    log.warning("moved the embedded database from %s to %s", old, new)


def add_trace_route(app: FastAPI, tracers: tuple[Tracer, ...], probes: list[SqlProbe]) -> None:
    """Expose recent trace events and SQL totals to the profiler (loopback use)."""

    async def trace(since: float = 0.0) -> dict[str, object]:
        events = [e for tracer in tracers for e in tracer.since(since)]
        sql = [probe.snapshot() for probe in probes]
        return {"pid": os.getpid(), "events": events, "sql": sql[0] if sql else None}

    app.add_api_route(TRACE_ROUTE, trace, methods=["GET"], include_in_schema=False)
