"""`vifwire boot`: a boot storm, as `nova boot --min-count N` would cause.

Without --target it drives the embedded stack, starting OVS and the stack for
this run when `vifwire up` has not (and stopping what it started). With
--target it drives any Neutron-API endpoint; the VMs are plugged into the OVS
given by the run dir, which that deployment's agent must watch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vifwire.cli import daemon
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import Settings
from vifwire.trace import make_tracer


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


@contextlib.contextmanager
def embedded_stack(settings: Settings) -> Iterator[bool]:
    """Yield with OVS and the stack running; stop only what this run started."""
    runtime = OvsRuntime(settings.ovs)
    started_ovs = not runtime.running()
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


def run_boot(settings: Settings, options: BootOptions, console: Console) -> dict[str, Any]:
    if options.target:
        return _storm(settings, options, options.target, console, ensure_network=False)
    with embedded_stack(settings):
        return _storm(settings, options, settings.api_url, console, ensure_network=True)


def _storm(settings: Settings, options: BootOptions, neutron_url: str, console: Console,
           ensure_network: bool) -> dict[str, Any]:
    from vifwire.compute.storm import StormConfig, run_storm

    tracer = make_tracer("compute", settings.trace_dir)
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
            tracer=tracer, progress=on_progress, ensure_network=ensure_network)
        try:
            result = asyncio.run(run_storm(config))
        finally:
            tracer.flush()
    return result.to_dict()


def print_summary(summary: dict[str, Any], console: Console) -> None:
    latency = summary.get("latency_ms") or {}
    table = Table(title=f"boot storm: {summary['vms']} VMs on network {summary.get('network')}",
                  show_header=False, title_justify="left")
    table.add_row("VMs booted", str(summary["vms"]))
    table.add_row("network-vif-plugged received", f"{summary['plugged']}/{summary['vms']}")
    if latency:
        table.add_row("plug -> vif-plugged (ms)",
                      "  ".join(f"{k} {latency[k]:.1f}" for k in ("min", "p50", "p99", "max")
                                if latency.get(k) is not None))
    ok = summary.get("connectivity_ok")
    table.add_row("connectivity", "[green]ok[/]: each VM reached its neighbour, the other "
                  "network's VM stayed unreachable" if ok else f"[red]FAILED[/] {ok}")
    for failure in summary.get("failures", [])[:10]:
        table.add_row("[red]failure[/]", str(failure))
    console.print(table)
