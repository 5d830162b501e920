"""The embedded stack: the API server and this host's agent in one process.

The server runs on the process's main asyncio loop; the agent runs on a thread
of its own with its own event loop (the bus hands messages across loops), so
its OVSDB events never queue behind API requests, and its threads carry the OS
name "vw-agent", so the profiler can tell the agent's CPU from the server's
within the one process. Both reach each other only through the bus: the
in-process one by default, or RabbitMQ when the settings name one.

Uvicorn runs programmatically; its own signal capture is disabled so a SIGTERM
stops the agent before the server and flushes the trace files. Both loops are
uvloop's: per request and per cross-thread hand-off it costs well under
asyncio's own loop (bench numbers in the session notes).

The pieces the distributed processes (`vifwire.distributed`) share with the
stack live here too: the start-up checks (one `StartupError` line each), serving
the API (`serve_api`) and starting an agent (`start_agent`).

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
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import uvicorn
import uvloop
from fastapi import FastAPI

from vifwire.api.http_protocol import server_config
from vifwire.bus import Bus, BusError, make_bus
from vifwire.profile.sql import SqlProbe, install_sql_probe
from vifwire.settings import DATABASE_FILE, STACK_READY_FILE, Settings
from vifwire.trace import Tracer

if TYPE_CHECKING:
    from vifwire.agent.service import OvsAgent

TRACE_ROUTE = "/_vifwire/trace"
SWITCH_INTERVAL_S = 0.0005
PR_SET_NAME = 15
# Run and state files (the database holds the whole inventory) are root's alone.
PRIVATE_UMASK = 0o077

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The stack cannot start: a dependency (database, OVS, bus) is unreachable or broken."""


def check_settings(settings: Settings) -> None:
    """Checks that need no running service, before anything starts."""
    from vifwire.server.notifier import check_nova_url
    from vifwire.server.nova_client import NovaUrlError

    try:
        check_nova_url(settings.nova_url)
    except NovaUrlError as exc:
        raise StartupError(str(exc)) from None
    check_auth_settings(settings)


def check_auth_settings(settings: Settings) -> None:
    """noauth makes every caller admin: only this machine may call it. keystone needs
    the service user tokens are checked with. A policy file must parse."""
    import ipaddress

    from vifwire.server.policy import PolicyError, load_rules
    from vifwire.settings import AUTH_STRATEGIES

    if settings.auth_strategy not in AUTH_STRATEGIES:
        raise StartupError(f"auth_strategy {settings.auth_strategy!r} is not one of "
                           f"{', '.join(AUTH_STRATEGIES)}")
    if settings.auth_strategy == "noauth":
        try:
            loopback = ipaddress.ip_address(settings.api_host).is_loopback
        except ValueError:
            loopback = settings.api_host == "localhost"
        if not loopback:
            raise StartupError(f"auth_strategy noauth lets any caller act as admin: it listens "
                               f"on loopback only, not {settings.api_host} (use auth_strategy "
                               "= keystone to listen there)")
    elif settings.keystone_authtoken is None:
        raise StartupError("auth_strategy keystone needs [keystone_authtoken] auth_url, "
                           "username and password in the configuration file")
    if settings.policy_file is not None:
        try:
            load_rules(settings.policy_file)
        except PolicyError as exc:
            raise StartupError(str(exc)) from None


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def check_database(url: str, *, schema_at_head: bool = False) -> None:
    """Connect once, so an unreachable database is one clear line, not a traceback;
    with `schema_at_head`, also refuse a schema older (or newer) than this code's."""
    from sqlalchemy.exc import SQLAlchemyError

    from vifwire.db.engine import make_engine
    from vifwire.db.version import current_revision, head_revision

    try:
        engine = make_engine(url)
        try:
            with engine.connect():
                pass
            current = current_revision(engine) if schema_at_head else None
        finally:
            engine.dispose()
    except (SQLAlchemyError, OSError, ImportError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StartupError(f"database {_shown(url)} is not reachable: {reason}") from exc
    if schema_at_head and current != (head := head_revision()):
        raise StartupError(f"database schema is at {current or 'nothing (empty database)'}, "
                           f"this vifwire needs {head}: run `vifwire db upgrade`")


def upgrade_database(url: str) -> str:
    """`vifwire db upgrade`: migrate to head; returns the revision reached."""
    from sqlalchemy.exc import SQLAlchemyError

    from vifwire.db.engine import make_engine, migrate
    from vifwire.db.version import current_revision

    check_database(url)
    engine = make_engine(url)
    try:
        migrate(engine)
        return current_revision(engine) or "?"
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StartupError(f"upgrading database {_shown(url)} failed: {reason}") from exc
    finally:
        engine.dispose()


async def start_bus(settings: Settings) -> Bus:
    """The settings' bus, started and metered; an unusable or unreachable broker is
    one StartupError line (the URL's password hidden)."""
    from vifwire.metrics import MeteredBus

    shown = _shown_bus(settings.bus_url)
    bus: Bus | None = None
    try:
        local = settings.bus_url == "local" or settings.bus_url.startswith("local://")
        bus = make_bus(settings.bus_url) if local else make_bus(settings.bus_url,
                                                                 prefix=settings.bus_prefix)
        await bus.start()
    except (BusError, OSError) as exc:
        if bus is not None:
            with contextlib.suppress(Exception):
                await bus.stop()
        # The bus's own errors are one line already, its URL redacted.
        reason = " ".join(str(exc).split()).replace(settings.bus_url, shown)
        if not isinstance(exc, BusError) or not reason:
            reason = f"bus {shown} is not reachable: {reason or type(exc).__name__}"
        raise StartupError(reason) from exc
    return MeteredBus(bus)


def _shown_bus(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    credentials, _, where = rest.rpartition("@")
    return f"{scheme}://{credentials.partition(':')[0]}:***@{where}"


def private_files(settings: Settings) -> None:
    """At the process edge: what this process creates is root's alone (0600/0700),
    and run/state files an older version left world-readable are tightened."""
    os.umask(PRIVATE_UMASK)
    for directory in {settings.run_dir, settings.effective_state_dir}:
        if not directory.is_dir():
            continue
        directory.chmod(0o700)
        for name in (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm",
                     "stack.log", "stack.pid"):
            with contextlib.suppress(FileNotFoundError):
                (directory / name).chmod(0o600)


AGENT_THREAD_NAME = "vw-agent"


def name_this_thread(name: str) -> None:
    """Set the OS-level name of the calling thread (threads it starts inherit it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


async def start_agent(settings: Settings, bus: Bus, tracer: Tracer) -> OvsAgent:
    """Start this host's OVS agent on the running loop: the one way both the
    embedded stack (on its agent thread) and `vifwire agent` start one."""
    from vifwire.agent.service import OvsAgent

    agent = OvsAgent(settings, bus, tracer)
    await agent.start()
    return agent


class AgentThread:
    """The OVS agent on its own thread and event loop."""

    def __init__(self, settings: Settings, bus: Bus, tracer: Tracer) -> None:
        self._settings, self._bus, self._tracer = settings, bus, tracer
        self.agent: OvsAgent | None = None
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
            self.agent = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                start_agent(self._settings, self._bus, self._tracer), self.loop))
        except BaseException:
            await self._end_thread()
            raise

    async def _end_thread(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join, 10)

    async def stop(self) -> None:
        try:
            if self.agent is not None:
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
        # The process owns the signals; see stop_on_signals.
        yield


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)


@contextlib.asynccontextmanager
async def serve_api(settings: Settings, bus: Bus, tracers: tuple[Tracer, ...],
                    probes: list[SqlProbe],
                    sock: socket.socket | None = None) -> AsyncIterator[asyncio.Task[None]]:
    """Serve the API (on `sock` if given, else the settings' address) until the
    block ends; yields the serving task once the server is started."""
    from vifwire.app import create_app
    from vifwire.metrics import MetricsApp, count_database_errors, outbox_backlog, renderer

    app = create_app(settings, bus, tracers[0])
    add_trace_route(app, tracers, probes)
    metered = MetricsApp(app, renderer())
    server = _Server(server_config(metered, settings.api_host, settings.api_port))
    serving = asyncio.create_task(server.serve(sockets=[sock] if sock else None),
                                  name="api:serve")
    try:
        while not server.started:
            if serving.done():
                serving.result()  # re-raise why it could not start
                raise StartupError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        engine = app.state.services.context.engine
        probes.append(install_sql_probe(engine))
        count_database_errors(engine)
        metered.render = renderer(outbox_backlog(engine))
        yield serving
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving


async def first_of(serving: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop_wait = asyncio.create_task(stop.wait(), name="stop:wait")
    await asyncio.wait({serving, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    stop_wait.cancel()


async def run_stack(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run server + agent until `stop` is set or SIGTERM/SIGINT arrives."""
    # The OVSDB IDL threads and the loop hand each port to one another several
    # times; at the default 5 ms switch interval a busy thread makes each hop wait.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    stop = stop or asyncio.Event()
    stop_on_signals(stop)

    check_settings(settings)
    adopt_database_from_run_dir(settings)
    check_database(settings.effective_database_url)
    bus = await start_bus(settings)
    from vifwire.metrics import MetricsTracer

    server_tracer = MetricsTracer("server", settings.trace_dir)
    agent_tracer = MetricsTracer("agent", settings.trace_dir)
    probes: list[SqlProbe] = []
    try:
        async with serve_api(settings, bus, (server_tracer, agent_tracer), probes) as serving:
            agent = AgentThread(settings, bus, agent_tracer)
            await agent.start()  # a failed start cleans up after itself
            try:
                log.info("vifwire stack ready on %s (host %s)", settings.api_url, settings.host)
                # What `vifwire up` waits for where it cannot ask the API (keystone).
                ready = settings.run_dir / STACK_READY_FILE
                ready.write_text(f"{os.getpid()}\n")
                try:
                    await first_of(serving, stop)
                finally:
                    ready.unlink(missing_ok=True)
            finally:
                await agent.stop()
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
