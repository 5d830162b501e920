"""The boot storm: N VMs booted at once, as Nova + os-vif + libvirt would.

For every VM, all started together as named tasks: create the port, bind it to
the instance and host, build the namespace and veth, plug the tap into the
integration bridge (stamping `t_plug`), then wait up to `timeout` (Nova's
`vif_plugging_timeout`) for `network-vif-plugged` at our own Nova endpoint.
Then the wiring is proved with traffic: each VM pings the next (a ring), and a
probe VM on a second network with the same CIDR must be unreachable from VM 0.

Nova's API (the event endpoint) runs as its own process for the whole storm,
so events are stamped on arrival, not when this busy loop gets to them.

Invariants: leftovers of crashed runs are cleaned first; the run state file
names every namespace and network before it is created (a port within a loop
turn of its creation, its name naming the run meanwhile); teardown (unless
`keep`) runs in a `finally`, and so does stopping the Nova process, so an
exception or a cancel never leaks namespaces, OVS ports, Neutron ports or
processes. Only the netlink work is bounded (a small thread pool);
Neutron calls and OVSDB transactions run as fast as the other side allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vifwire.compute.connectivity import check_connectivity
from vifwire.compute.errors import ComputeError, NeutronClientError
from vifwire.compute.neighbours import make_room
from vifwire.compute.neutron import (
    DEFAULT_RETRY,
    NeutronClient,
    Retry,
    TargetNetwork,
    delete_quietly,
)
from vifwire.compute.nova_events import VIF_PLUGGED, EventBook, NovaEndpoint
from vifwire.compute.plug import OvsPlugger
from vifwire.compute.result import StormResult, VmRecord
from vifwire.compute.state import DONE, KEPT, CleanupReport, RunState, clean_leftovers
from vifwire.compute.vm import NS_PREFIX, Vm, spec_from_port
from vifwire.nova_token import ensure_token, token_path
from vifwire.settings import OvsSettings
from vifwire.trace import NullTracer, Stage, Tracer

Progress = Callable[[str, int, int], None]
# Room for `boot --count 1000` (the CLI maximum) plus the gateway and the probe.
DEMO_CIDR = "10.0.0.0/22"
ACTIVE_POLL_S = 0.05


@dataclass(frozen=True)
class StormHost:
    """A compute host of the storm: its name (the ports' binding:host_id), the OVS its
    VMs are plugged into, and the namespace that OVS runs in (None: the root one)."""

    name: str
    ovs: OvsSettings
    netns: str | None = None


@dataclass(frozen=True)
class StormConfig:
    neutron_url: str
    network: str
    count: int
    host: str
    ovs: OvsSettings
    run_dir: Path
    nova_url: str = "http://127.0.0.1:8774/v2.1"
    token: str | None = None
    # Demand the run dir's token (vifwire.nova_token) from whoever posts events.
    # A foreign Neutron (--target) authenticates to Nova with its own Keystone,
    # which this emulator cannot check yet, so it is not asked for one.
    nova_auth: bool = True
    project_id: str | None = None
    timeout: float = 300.0  # Nova's vif_plugging_timeout
    keep: bool = False
    check_connectivity: bool = True
    ensure_network: bool = False
    tracer: Tracer | None = None
    # Poll the ports' status to see when each goes ACTIVE: what a profile of a
    # foreign Neutron can observe of it (the embedded stack traces it itself).
    watch_active: bool = False
    progress: Progress | None = None
    ns_prefix: str = NS_PREFIX
    host_netns: str | None = None  # the namespace the private OVS runs in, if any
    netlink_workers: int = 4
    ping_concurrency: int = 16
    # How long each Neutron call keeps retrying while Neutron is unreachable or 503.
    neutron_retry: Retry = DEFAULT_RETRY
    # Instances booted earlier (kept VMs) whose events this storm's Nova accepts too.
    extra_servers: tuple[str, ...] = ()
    # Runs after every VM booted (or failed), before the connectivity check: the
    # chaos bench waits for recovery and inspects the storm here.
    after_boot: Callable[[Storm], Awaitable[None]] | None = None
    # Several hosts: VM i goes to hosts[i % len(hosts)], as Nova's scheduler spreads
    # equal instances. Empty: the one host given by host, ovs and host_netns.
    hosts: tuple[StormHost, ...] = ()
    # `boot --port-security`: the network has port security on (a new one is made
    # so), every VM is in its project's default group, and the connectivity check
    # also boots an outsider in a group of its own that the members must not
    # reach (`vifwire.compute.connectivity`). False: a network without port
    # security. None: whatever the network has.
    port_security: bool | None = None
    # Nova's max_concurrent_builds: at most this many VMs in build at once on each
    # host (Nova's default is 10); 0: every VM at once. A VM's clock starts when its
    # build starts, as in Nova, so the queue before it is not counted as its latency.
    max_concurrent_builds: int = 0

    @property
    def storm_hosts(self) -> tuple[StormHost, ...]:
        return self.hosts or (StormHost(self.host, self.ovs, self.host_netns),)


class _Counter:
    """Progress per stage: calls `progress(stage, done, total)` as VMs pass."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total = progress, total
        self.done: dict[str, int] = {}

    def __call__(self, stage: str) -> None:
        self.done[stage] = self.done.get(stage, 0) + 1
        if self.progress is not None:
            self.progress(stage, self.done[stage], self.total)


class Storm:
    """One run's state and steps; `run_storm` drives it."""

    def __init__(self, config: StormConfig, neutron: NeutronClient, plugger: OvsPlugger,
                 book: EventBook, state: RunState, target: TargetNetwork,
                 executor: ThreadPoolExecutor,
                 pluggers: dict[str, OvsPlugger] | None = None) -> None:
        self.config = config
        self.neutron, self.plugger, self.book = neutron, plugger, book
        self.hosts = config.storm_hosts
        # One plugger (one OVSDB connection) per host, by host name.
        self.pluggers = pluggers or {self.hosts[0].name: plugger}
        self.state, self.target, self.executor = state, target, executor
        self.vms: dict[str, Vm] = {}  # by port id
        self.result = StormResult(state.run_id, target.id, config.count)
        self.count = _Counter(config.progress, config.count)
        self.build_slots = {host.name: asyncio.Semaphore(config.max_concurrent_builds)
                            for host in self.hosts if config.max_concurrent_builds > 0}

    def place(self, index: int) -> StormHost:
        """The host of VM `index`: round-robin, so equal VMs spread evenly."""
        return self.hosts[index % len(self.hosts)]

    async def boot(self, record: VmRecord, network: TargetNetwork, host: StormHost | None = None,
                   **port_extra: Any) -> None:
        """One VM, Nova's way, on `host` (default: its place), in one of that host's
        build slots when they are limited. Failures land in the record, never raise."""
        host = host or self.place(record.index)
        slots = self.build_slots.get(host.name)
        if slots is None:
            await self._build(record, network, host, **port_extra)
            return
        async with slots:
            await self._build(record, network, host, **port_extra)

    async def _build(self, record: VmRecord, network: TargetNetwork, host: StormHost,
                     **port_extra: Any) -> None:
        cfg = self.config
        record.host = host.name
        count = self.count if not record.probe else (lambda stage: None)
        record.t_start = time.time()
        try:
            self.book.expect_server(record.vm_uuid)
            record.stage = "port"
            port = await self.neutron.create_port(
                network.id, project_id=cfg.project_id, device_id=record.vm_uuid,
                name=f"vifwire-{self.state.run_id}-{record.index}", **port_extra)
            record.port_id, record.t_port = port["id"], time.time()
            self.book.tracer.mark(Stage.CREATED, record.port_id, t=record.t_port)
            self.state.add(port=record.port_id)
            count("ports")
            record.stage = "bind"
            port = await self.neutron.bind_port(record.port_id, record.vm_uuid, host.name)
            record.t_bound = time.time()
            if port.get("binding:vif_type") not in (None, "unbound", "binding_failed"):
                self.book.tracer.mark(Stage.BOUND, record.port_id, t=record.t_bound)
            count("bound")
            record.stage = "vm"
            spec = spec_from_port(port, network.subnets, network.mtu, cfg.ns_prefix,
                                  host.netns)
            record.ip, record.mac = spec.ip, spec.mac
            record.namespace, record.tap = spec.namespace, spec.tap
            self.state.add(namespace=spec.namespace, tap=spec.tap)
            await self.state.commit()  # named on disk before it exists
            vm = self.vms[record.port_id] = Vm(spec, self.executor)
            await vm.create()
            record.t_vm = time.time()
            count("vms")
            record.stage = "plug"
            record.t_plug = await self.pluggers[host.name].plug(
                record.port_id, spec.mac, record.vm_uuid, mtu=spec.mtu)
            count("plugged")
            record.stage = "event"
            event = await self.book.wait(VIF_PLUGGED, record.port_id, cfg.timeout)
            record.t_event = event.t
            if event.status != "completed":
                raise ComputeError(f"network-vif-plugged came with status {event.status}")
            record.stage = "wired"
            count("events")
        except (ComputeError, KeyError, ValueError) as exc:
            record.error = str(exc) or type(exc).__name__

    async def boot_all(self) -> None:
        records = [VmRecord(i, str(uuid.uuid4())) for i in range(self.config.count)]
        self.result.records.extend(records)
        watcher = (asyncio.create_task(self.watch_active(), name="storm:watch-active")
                   if self.config.watch_active else None)
        try:
            await gather_named("storm:boot", [self.boot(r, self.target) for r in records])
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

        missing = [r.port_id for r in records if r.error and r.stage == "event" and not r.t_event]
        if missing:
            self.result.error = (
                f"timed out after {self.config.timeout:g}s waiting for network-vif-plugged "
                f"for {len(missing)} port(s): {', '.join(missing)}")
        elif any(r.error for r in records):
            first = next(r for r in records if r.error)
            failed = sum(1 for r in records if r.error)
            self.result.error = f"{failed} VM(s) failed; first at {first.stage}: {first.error}"

    async def watch_active(self, interval: float = ACTIVE_POLL_S) -> None:
        """Mark ACTIVE the first time a poll of the storm's ports shows it."""
        seen: set[str] = set()
        while True:
            await asyncio.sleep(interval)
            pending = [r.port_id for r in self.result.records
                       if r.port_id and r.port_id not in seen]
            for start in range(0, len(pending), 50):
                try:
                    ports = await self.neutron.list_ports(id=pending[start:start + 50],
                                                          fields=["id", "status"])
                except ComputeError:
                    continue  # a missed poll only coarsens what we see
                now = time.time()
                for port in ports:
                    if port.get("status") == "ACTIVE" and port["id"] not in seen:
                        seen.add(port["id"])
                        self.book.tracer.mark(Stage.ACTIVE, port["id"], t=now, seen_by="poll")

    async def teardown(self) -> None:
        records = [r for r in self.result.records if r.port_id]
        await gather_named("storm:teardown", [self._teardown_one(r) for r in records])
        for network_id in list(self.state.networks):
            try:
                await delete_quietly(self.neutron.delete_network, network_id)
                self.state.discard(network=network_id)
            except NeutronClientError as exc:
                self.result.teardown_errors.append(str(exc))
        for group_id in list(self.state.security_groups):  # unused once its ports went
            try:
                await delete_quietly(self.neutron.delete_security_group, group_id)
                self.state.discard(security_group=group_id)
            except NeutronClientError as exc:
                self.result.teardown_errors.append(str(exc))
        self.state.save()

    async def _teardown_one(self, record: VmRecord) -> None:
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        vm = self.vms.get(record.port_id)
        if vm is not None:
            plugger = self.pluggers.get(record.host, self.plugger)
            steps += [("tap", lambda: plugger.unplug(vm.tap)),
                      ("namespace", vm.delete)]
        steps.append(("port", lambda: delete_quietly(self.neutron.delete_port,
                                                     record.port_id)))
        for kind, step in steps:
            try:
                await step()
            except ComputeError as exc:
                self.result.teardown_errors.append(f"{record.port_id}: {exc}")
                continue
            if kind == "port":
                self.state.discard(port=record.port_id)
            elif kind == "namespace" and vm is not None:
                self.state.discard(namespace=vm.namespace, tap=vm.tap)
        self.book.forget_server(record.vm_uuid)


async def run_storm(config: StormConfig) -> StormResult:
    if config.count < 1:
        raise ComputeError("count must be at least 1")
    tracer = config.tracer or NullTracer()
    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    phases: dict[str, float] = {}
    executor = ThreadPoolExecutor(config.netlink_workers, thread_name_prefix="vm-netlink")
    book = EventBook(tracer)
    token_file = None
    if config.nova_auth:
        ensure_token(config.run_dir)  # the stack's notifier reads it too (vifwire.nova_token)
        token_file = token_path(config.run_dir)
    nova = NovaEndpoint(book, config.nova_url, token_file=token_file)
    try:
        await nova.spawn()  # it starts up while we clean and look around
        async with NeutronClient(config.neutron_url, config.token,
                                 retry=config.neutron_retry) as neutron, \
                contextlib.AsyncExitStack() as opened:
            pluggers = {host.name: await opened.enter_async_context(
                OvsPlugger(host.ovs, run_id, tracer)) for host in config.storm_hosts}
            plugger = next(iter(pluggers.values()))
            t = time.monotonic()
            cleaned = CleanupReport()
            for each in pluggers.values():  # each host's OVS may hold a dead run's taps
                found = await clean_leftovers(config.run_dir, each, neutron)
                for kind, names in asdict(found).items():
                    getattr(cleaned, kind).extend(names)
            phases["cleanup"] = time.monotonic() - t
            target = await find_target_network(neutron, config)
            state = RunState.new(config.run_dir, run_id, neutron_url=config.neutron_url,
                                 bridge=config.ovs.integration_bridge,
                                 host_netns=config.host_netns)
            storm = Storm(config, neutron, plugger, book, state, target, executor, pluggers)
            storm.result.phases_s = phases
            storm.result.cleaned = {k: v for k, v in asdict(cleaned).items() if v}
            await nova.started()
            for server in config.extra_servers:
                book.expect_server(server)
            # One kernel's ARP table holds every VM's neighbours (compute.neighbours).
            storm.result.neighbour_limits = make_room(config.count)
            try:
                t = time.monotonic()
                await storm.boot_all()
                phases["boot"] = time.monotonic() - t
                if config.after_boot is not None:
                    await config.after_boot(storm)
                if config.check_connectivity:
                    t = time.monotonic()
                    await check_connectivity(storm)
                    phases["connectivity"] = time.monotonic() - t
            finally:
                t = time.monotonic()
                await _finish(storm, config.keep)
                phases["teardown"] = time.monotonic() - t
                storm.result.neutron_retries = neutron.retries
            phases["total"] = time.monotonic() - started
            return storm.result
    finally:
        await nova.stop()
        tracer.flush()
        executor.shutdown(wait=False, cancel_futures=True)


async def _finish(storm: Storm, keep: bool) -> None:
    if keep:
        storm.result.kept = True
        storm.state.status = KEPT
        storm.state.save()
        return
    # Teardown must finish even if the storm is being cancelled meanwhile.
    task = asyncio.create_task(storm.teardown(), name="storm:teardown")
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
    storm.state.status = DONE
    if storm.state.ports or storm.state.networks or storm.state.namespaces \
            or storm.state.security_groups:
        storm.state.save()  # the next storm's cleanup takes what is left
    else:
        storm.state.path.unlink(missing_ok=True)


async def find_target_network(neutron: NeutronClient, config: StormConfig) -> TargetNetwork:
    network = await neutron.find_network(config.network)
    wanted = config.port_security
    if network is None:
        if not config.ensure_network:
            raise ComputeError(f"network {config.network!r} not found in Neutron at "
                               f"{config.neutron_url}")
        network = await neutron.create_network(
            config.network, **({} if wanted is None else {"port_security_enabled": wanted}))
        await neutron.create_subnet(network["id"], DEMO_CIDR, name=f"{config.network}-v4")
    if wanted is not None and network.get("port_security_enabled", True) != wanted:
        raise ComputeError(f"network {config.network!r} has port security "
                           f"{'off' if wanted else 'on'}; boot on another network")
    subnets = {s["id"]: s for s in await neutron.list_subnets(network["id"])}
    v4 = [s for s in subnets.values() if ipaddress.ip_network(s["cidr"]).version == 4]
    if not v4:
        raise ComputeError(f"network {config.network!r} has no IPv4 subnet")
    return TargetNetwork(network, v4[0], subnets)


async def gather_named(prefix: str, coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run all at once as tasks named `<prefix>:<i>`.

    If one fails or this is cancelled, the others are cancelled and awaited before
    the error propagates, so no task still builds while the caller tears down.
    """
    tasks = [asyncio.create_task(c, name=f"{prefix}:{i}") for i, c in enumerate(coros)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
