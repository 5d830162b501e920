"""Distributed mode's processes: API server workers under a supervisor, and a host agent.

`vifwire server --workers N`: the supervisor (this process) runs the start-up
checks once (database reachable and at the schema head, broker reachable), binds
the API socket, and forks N workers that share nothing but that listening
socket, the database and the bus. The kernel hands each accepted connection to
whichever worker is free, so any worker serves any request; each worker
consumes the bus's server topic and casts to the agents itself. The supervisor
waits for signals only (SIGCHLD, SIGTERM, SIGINT, with `sigwaitinfo`: no
polling): a worker that dies is logged and restarted; one that keeps dying
within seconds of its start stops the server with an error rather than spin.
SIGTERM is passed to every worker, which finishes its requests and exits.

Forking happens before any event loop or thread exists in the supervisor, so a
worker starts clean; prometheus-client's multiprocess directory is set before
any worker imports it, so a scrape of any worker counts all of them.

`vifwire agent --host NAME`: one host's OVS agent as its own process, on the
bus, until SIGTERM; it leaves Open vSwitch running so its restart never cuts
the VMs' traffic.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field

import uvloop

from vifwire.settings import Settings
from vifwire.stack import (
    StartupError,
    check_database,
    check_settings,
    first_of,
    name_this_thread,
    serve_api,
    start_agent,
    start_bus,
    stop_on_signals,
)

log = logging.getLogger(__name__)

BACKLOG = 2048
PR_SET_PDEATHSIG = 1
# A worker that dies sooner than this after its start "crashed at start"; after
# CRASH_LIMIT such deaths in a row the server gives up instead of looping.
EARLY_DEATH_S = 5.0
CRASH_LIMIT = 5
STOP_TIMEOUT_S = 20.0
SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


def workers_for(settings: Settings) -> int:
    """How many workers: the setting, else one per core (one on the local bus)."""
    if settings.api_workers is not None:
        if settings.api_workers > 1 and settings.bus_url == "local":
            raise StartupError(f"--workers {settings.api_workers} needs a shared bus: the local "
                               "bus cannot reach other processes (give --bus-url amqp://...)")
        return settings.api_workers
    return 1 if settings.bus_url == "local" else (os.cpu_count() or 1)


def bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.api_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.api_host, settings.api_port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {settings.api_url}: {exc.strerror}") from None
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


async def _check_bus(settings: Settings) -> None:
    bus = await start_bus(settings)
    await bus.stop()


def preflight(settings: Settings) -> None:
    """Everything a server refuses to start without, as one StartupError line."""
    check_settings(settings)
    check_database(settings.effective_database_url, schema_at_head=True)
    if settings.bus_url != "local":
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_check_bus(settings))


@dataclass
class _Worker:
    index: int
    pid: int
    started: float
    early_deaths: int = 0


@dataclass
class Supervisor:
    settings: Settings
    count: int
    sock: socket.socket
    workers: dict[int, _Worker] = field(default_factory=dict)
    metrics_dir: str = ""

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (exit 0) or a worker crash loop (exit 1)."""
        signal.signal(signal.SIGCHLD, lambda *_: None)  # queued for sigwaitinfo, not ignored
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        for index in range(self.count):
            self._spawn(index, 0)
        log.warning("vifwire server on %s: %d workers (pids %s)", self.settings.api_url,
                    self.count, " ".join(str(w.pid) for w in self.workers.values()))
        status = 0
        while True:
            info = signal.sigwaitinfo(SIGNALS)
            if info.si_signo != signal.SIGCHLD:
                break
            if not self._reap():
                status = 1
                break
        self._stop_all()
        return status

    def _spawn(self, index: int, early_deaths: int) -> None:
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            os._exit(_worker_main(self.settings, self.sock, index, supervisor))
        self.workers[pid] = _Worker(index, pid, time.monotonic(), early_deaths)

    def _reap(self) -> bool:
        """Restart every worker that died; False when one is in a crash loop."""
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            how = (f"signal {signal.Signals(-code).name}" if (code := os.waitstatus_to_exitcode(
                status)) < 0 else f"exit code {code}")
            early = time.monotonic() - worker.started < EARLY_DEATH_S
            deaths = worker.early_deaths + 1 if early else 0
            if deaths >= CRASH_LIMIT:
                log.error("server worker %d (pid %d) died at start %d times in a row (%s): "
                          "stopping", worker.index, pid, deaths, how)
                return False
            if self.metrics_dir:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(pid, self.metrics_dir)
            self._spawn(worker.index, deaths)
            log.warning("server worker %d (pid %d) died with %s; restarted as pid %d",
                        worker.index, pid, how, max(self.workers))
        return True

    def _stop_all(self) -> None:
        from vifwire.procs import process_alive

        for pid in self.workers:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for pid in list(self.workers):
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        self.workers.clear()


def run_server(settings: Settings) -> int:
    """`vifwire server`: check, bind, fork the workers and supervise them."""
    count = workers_for(settings)
    # Before anything imports prometheus-client: it picks its storage at import.
    metrics_dir = settings.run_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)  # counters of an earlier run
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    preflight(settings)
    sock = bind(settings)
    try:
        return Supervisor(settings, count, sock, metrics_dir=str(metrics_dir)).run()
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _worker_main(settings: Settings, sock: socket.socket, index: int, supervisor: int) -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    # A supervisor killed by SIGKILL cannot stop its workers: the kernel does.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the line above
        return 1
    name_this_thread(f"vw-worker-{index}")
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve_worker(settings, sock))
    except StartupError as exc:
        log.error("server worker %d: %s", index, exc)
        return 1
    except Exception:
        log.exception("server worker %d failed", index)
        return 1
    return 0


async def _serve_worker(settings: Settings, sock: socket.socket) -> None:
    from vifwire.metrics import MetricsTracer

    stop = asyncio.Event()
    stop_on_signals(stop)
    bus = await start_bus(settings)
    tracer = MetricsTracer("server", settings.trace_dir)
    try:
        async with serve_api(settings, bus, (tracer,), [], sock=sock) as serving:
            await first_of(serving, stop)
    finally:
        await bus.stop()
        tracer.flush()


def run_agent(settings: Settings) -> None:
    """`vifwire agent`: reach the bus, start this host's OVS if needed and run its
    agent until SIGTERM."""
    if settings.bus_url == "local":
        raise StartupError("vifwire agent needs a shared bus to reach the server "
                           "(give --bus-url amqp://...)")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve_agent(settings))


async def _serve_agent(settings: Settings) -> None:
    from vifwire.metrics import MetricsTracer, renderer
    from vifwire.ovs.runtime import host_runtime

    stop = asyncio.Event()
    stop_on_signals(stop)
    bus = await start_bus(settings)  # first: a broker that is down costs no OVS start
    tracer = MetricsTracer("agent", settings.trace_dir)
    metrics = None
    try:
        await asyncio.to_thread(host_runtime(settings).start)
        agent = await start_agent(settings, bus, tracer)
        try:
            if settings.agent_metrics_port is not None:
                metrics = await _serve_metrics(settings.agent_metrics_port, renderer())
            log.warning("vifwire agent of host %s is running", settings.host)
            await stop.wait()
        finally:
            if metrics is not None:
                metrics.close()
            await agent.stop()
    finally:
        await bus.stop()
        tracer.flush()


async def _serve_metrics(port: int, render: object) -> asyncio.Server:
    """A tiny HTTP/1.0 answer to any request on 127.0.0.1:port: the agent's metrics."""
    from prometheus_client import CONTENT_TYPE_LATEST

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body: bytes = render()  # type: ignore[operator]
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: " + CONTENT_TYPE_LATEST.encode()
                         + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    try:
        return await asyncio.start_server(answer, "127.0.0.1", port)
    except OSError as exc:
        raise StartupError(f"cannot serve agent metrics on 127.0.0.1:{port}: "
                           f"{exc.strerror}") from None
