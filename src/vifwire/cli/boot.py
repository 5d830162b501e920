"""`vifwire boot`: a boot storm, as `nova boot --min-count N` would cause.

Without --target it drives the embedded stack, starting OVS and the stack for
this run when `vifwire up` has not (and stopping what it started). With
--target it drives any Neutron-API endpoint; the VMs are plugged into the OVS
given by the run dir, which that deployment's agent must watch. When the run
dir holds a `vifwire cluster` (or --cluster names one), it drives that: its
server, its Nova URL, and the VMs spread round-robin over its hosts (each VM's
port bound to its host, its tap plugged into that host's OVS), or all on the
one `--host` names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vifwire.cli import daemon
from vifwire.compute.namespaces import NETNS_DIR
from vifwire.ovs.runtime import host_runtime
from vifwire.settings import OvsSettings, Settings
from vifwire.trace import make_tracer, write_events

if TYPE_CHECKING:
    from vifwire.cluster import RigState
    from vifwire.compute.storm import StormHost


@dataclass(frozen=True)
class BootOptions:
    count: int
    network: str
    target: str | None
    token: str | None
    keep: bool
    timeout: float
    check_connectivity: bool
    show_progress: bool
    profile_dir: Path | None = None
    cprofile: bool = False
    host: str | None = None  # every VM on this host; default: spread over the hosts
    cluster: Path | None = None  # a `vifwire cluster` rig's state file or directory
    port_security: bool | None = None  # True: `--port-security` (StormConfig.port_security)
    max_concurrent_builds: int = 0  # per host, as Nova's option; 0: all at once


@contextlib.contextmanager
def embedded_stack(settings: Settings, keep_netns: bool = False) -> Iterator[bool]:
    """Yield with OVS and the stack running; stop only what this run started.

    That includes the `--ovs-netns` namespace when this run created it (removed by
    its name, after the switch in it stopped), unless `keep_netns`: kept VMs' host
    ends live in it.
    """
    runtime = host_runtime(settings)
    created_netns = settings.ovs_netns is not None and not netns_exists(settings.ovs_netns)
    started_ovs = not runtime.running()
    try:
        runtime.start()
        started_stack = daemon.stack_pid(settings) is None
        try:
            daemon.start(settings)
            yield started_stack
        finally:
            if started_stack:
                daemon.stop(settings)
            if started_ovs:
                runtime.stop()
    finally:
        if created_netns and started_ovs and not keep_netns:
            assert settings.ovs_netns is not None
            delete_netns(settings.ovs_netns)


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def run_boot(settings: Settings, options: BootOptions, console: Console) -> dict[str, Any]:
    """Run the storm; with a profile dir, also record and render the profile."""
    profile_dir = options.profile_dir
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    rig = None if options.target else find_rig(settings.run_dir, options.cluster)
    if rig is not None:
        summary = _storm(settings.with_(run_dir=Path(rig.server_run_dir), nova_url=rig.nova_url),
                         options,
                         rig.api_url, console, ensure_network=True, hosts=rig_hosts(rig, options))
    elif options.target:
        summary = _storm(_on_host(settings, options), options, options.target, console,
                         ensure_network=False)
    else:
        settings = _on_host(settings, options)
        stack_settings = settings
        if options.cprofile and profile_dir is not None:
            stack_settings = settings.with_(cprofile_dir=profile_dir)
        with embedded_stack(stack_settings, keep_netns=options.keep) as started:
            if options.cprofile and not started:
                console.print("note: the running stack was started without --cprofile; "
                              "only the compute emulator is cProfiled", highlight=False)
            summary = _storm(settings, options, settings.api_url, console, ensure_network=True)
    if profile_dir is not None:
        (profile_dir / "storm.json").write_bytes(orjson.dumps(summary))
        from vifwire.profile.report import render

        profile_path, html_path = render(profile_dir)
        summary["profile"] = {"json": str(profile_path), "html": str(html_path)}
    return summary


def _components(settings: Settings, external: bool) -> dict[str, Any]:
    """What the resource sampler watches: our own processes only, by pid."""
    from vifwire.profile.resources import ThreadGroup
    from vifwire.stack import AGENT_THREAD_NAME

    components: dict[str, list[int] | ThreadGroup] = {"compute": [os.getpid()]}
    stack = None if external else daemon.stack_pid(settings)
    if stack is not None:
        # One process, told apart by thread names (see vifwire.stack).
        components["server"] = ThreadGroup(stack, AGENT_THREAD_NAME, exclude=True)
        components["agent"] = ThreadGroup(stack, AGENT_THREAD_NAME)
    runtime = host_runtime(settings)
    for name in ("ovsdb-server", "ovs-vswitchd"):
        pid = runtime.pid(name)
        if pid is not None:
            components[name] = [pid]
    return components


def _collect_stack_trace(settings: Settings, since: float, directory: Path) -> None:
    """Save what the stack recorded during the storm as raw profile files."""
    from vifwire.stack import TRACE_ROUTE

    response = httpx.get(f"{settings.api_url}{TRACE_ROUTE}", params={"since": since}, timeout=30)
    response.raise_for_status()
    body = response.json()
    by_component: dict[str, list[dict[str, Any]]] = {}
    for event in body["events"]:
        by_component.setdefault(event["component"], []).append(event)
    for component, events in by_component.items():
        write_events(directory, component, body["pid"], events)
    if body.get("sql"):
        (directory / f"sql-server-{body['pid']}.json").write_bytes(orjson.dumps(body["sql"]))


def _on_host(settings: Settings, options: BootOptions) -> Settings:
    return settings.with_(host=options.host) if options.host else settings


def find_rig(run_dir: Path, cluster: Path | None) -> RigState | None:
    """The cluster to boot on: named by --cluster, else the run dir's, else none."""
    from vifwire.cluster import find

    return find(run_dir, cluster)


def rig_hosts(rig: RigState, options: BootOptions) -> tuple[StormHost, ...]:
    """The rig's hosts as the storm sees them (all, or the one --host names)."""
    from vifwire.compute.storm import StormHost

    chosen = [rig.host(options.host)] if options.host else rig.hosts
    return tuple(StormHost(h.name, OvsSettings(run_dir=h.ovs_dir), h.netns) for h in chosen)


def _storm(settings: Settings, options: BootOptions, neutron_url: str, console: Console,
           ensure_network: bool, hosts: tuple[StormHost, ...] = ()) -> dict[str, Any]:
    """`hosts`: a cluster's (its server and agents run on their own; only the
    compute emulator is sampled and profiled)."""
    from vifwire.compute.storm import StormConfig, run_storm
    from vifwire.profile.cprof import profiled
    from vifwire.profile.sampler_process import SamplerProcess

    profile_dir = options.profile_dir
    external = options.target is not None or bool(hosts)
    tracer = make_tracer("compute", profile_dir or settings.trace_dir)
    sampler = (SamplerProcess(_components(settings, external), profile_dir / "resources.json")
               if profile_dir else None)
    since = time.time()
    with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=not options.show_progress) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        config = StormConfig(
            neutron_url=neutron_url, token=options.token, network=options.network,
            count=options.count, host=settings.host, ovs=settings.ovs,
            nova_url=settings.nova_url, timeout=options.timeout, keep=options.keep,
            run_dir=settings.run_dir, check_connectivity=options.check_connectivity,
            tracer=tracer, progress=on_progress, ensure_network=ensure_network,
            host_netns=settings.ovs_netns, watch_active=external and profile_dir is not None,
            nova_auth=options.target is None, hosts=hosts,
            port_security=options.port_security,
            max_concurrent_builds=options.max_concurrent_builds)
        if sampler is not None:
            sampler.start()
        try:
            with profiled("compute", profile_dir if options.cprofile else None):
                result = asyncio.run(run_storm(config))
        finally:
            tracer.flush()
            if sampler is not None:
                sampler.stop()  # it writes resources.json itself
    if profile_dir is not None and not external:
        _collect_stack_trace(settings, since, profile_dir)
    return result.to_dict()


def print_summary(summary: dict[str, Any], network: str, console: Console) -> None:
    latency = summary.get("latency_ms") or {}
    table = Table(title=f"boot storm: {summary['vms']} VMs on network {network}",
                  show_header=False, title_justify="left")
    table.add_row("VMs booted", str(summary["vms"]))
    table.add_row("network-vif-plugged received", f"{summary['plugged']}/{summary['vms']}")
    if latency:
        table.add_row("plug -> vif-plugged (ms)",
                      "  ".join(f"{k} {latency[k]:.1f}" for k in ("min", "p50", "p99", "max")
                                if latency.get(k) is not None))
    connectivity = summary.get("connectivity") or {}
    if not connectivity.get("checked", True):
        table.add_row("connectivity", "not checked (--no-connectivity)")
    elif summary.get("connectivity_ok"):
        late = connectivity.get("ring_late") or 0
        table.add_row("connectivity", "[green]ok[/]: each VM reached its neighbour, the other "
                      "network's VM stayed unreachable"
                      + (f" ({late} pairs answered late, the last after "
                         f"{connectivity.get('ring_settled_s')} s)" if late else ""))
    else:
        table.add_row("connectivity", f"[red]FAILED[/] {connectivity}")
    secured = summary.get("port_security")
    if secured:
        table.add_row("port security", f"members reach each other: {secured['members_ok']}; "
                      f"a VM of another group refused: {secured['outsider_refused']}"
                      + (f" (answered {', '.join(secured['outsider_answered'])})"
                         if secured["outsider_answered"] else ""))
    if summary.get("neutron_retries"):
        table.add_row("Neutron calls retried", f"{summary['neutron_retries']} (Neutron was "
                      "unreachable or busy for a while)")
    if summary.get("error"):
        table.add_row("[red]error[/]", str(summary["error"]))
    for failure in summary.get("failures", [])[:10]:
        table.add_row("[red]failure[/]", str(failure))
    console.print(table)
