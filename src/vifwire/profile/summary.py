"""The terminal summary of a profile: a few rich tables, read from profile.json.

Everything here formats a finished profile document; nothing is computed that
is not already in it, so the terminal and report.html cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if abs(value) >= 10_000 else f"{value:.1f}"


def transitions_table(profile: Mapping[str, Any]) -> Table:
    dominant = profile["dominant"].get("transition")
    table = Table(title="Stage transitions (ms)", title_justify="left")
    table.add_column("transition")
    for col in ("n", "min", "p50", "p90", "p99", "max", "share of p50"):
        table.add_column(col, justify="right")
    shares = profile["dominant"].get("shares", {})
    for name, stats in profile["transitions"].items():
        share = shares.get(name)
        style = "bold red" if name == dominant else ("bold" if name == profile["dominant"]["span"]
                                                      else None)
        table.add_row(name, str(stats["n"]), *(_ms(stats.get(k)) for k in
                                               ("min", "p50", "p90", "p99", "max")),
                      f"{share:.0%}" if share is not None else "", style=style)
    return table


def stragglers_table(profile: Mapping[str, Any]) -> Table:
    table = Table(title="Stragglers (slowest plugged->event_received)", title_justify="left")
    for col, justify in (("port", "left"), ("total ms", "right"), ("held longest by", "left"),
                         ("ms", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in profile["stragglers"]:
        table.add_row(row["port"], _ms(row["total_ms"]), row["worst"] or "-", _ms(row["worst_ms"]))
    return table


def cpu_table(profile: Mapping[str, Any]) -> Table | None:
    cpu = profile.get("cpu")
    if not cpu:
        return None
    whole = cpu.get("whole") or {}
    title = f"CPU over the storm ({cpu['window_s']:.1f} s), {cpu['vms']} VMs"
    if whole:
        title += f"; whole window {whole['window_s']:.1f} s (teardown included)"
    table = Table(title=title, title_justify="left")
    cols = ["component", "storm CPU s", "per VM ms"] + (
        ["whole CPU s", "whole per VM ms"] if whole else [])
    for col in cols:
        table.add_column(col, justify="left" if col == "component" else "right")
    for name, seconds in cpu["seconds"].items():
        row = [name, f"{seconds:.2f}", f"{cpu['per_vm'].get(name, 0.0) * 1000:.2f}"]
        if whole:
            row += [f"{whole['seconds'].get(name, 0.0):.2f}",
                    f"{whole['per_vm'].get(name, 0.0) * 1000:.2f}"]
        table.add_row(*row)
    return table


def sql_table(profile: Mapping[str, Any]) -> Table | None:
    sql = profile.get("sql")
    if not sql:
        return None
    table = Table(title="SQL", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    ratio = sql.get("cache_hit_ratio")
    share = sql.get("build_share")
    rows = [
        ("statements", str(sql["statements"])),
        ("statements per port lifecycle", str(sql.get("per_port", "-"))),
        ("build (compile+params) s", f"{sql['build_s']:.3f}"),
        ("execute (DBAPI) s", f"{sql['execute_s']:.3f}"),
        ("build share", f"{share:.0%}" if share is not None else "-"),
        ("statement cache hit ratio", f"{ratio:.0%}" if ratio is not None else "-"),
        ("cache outcomes", ", ".join(f"{k} {v}" for k, v in sorted(sql["cache"].items()))),
    ]
    for metric, value in rows:
        table.add_row(metric, value)
    return table


def headline(profile: Mapping[str, Any]) -> str:
    dom = profile["dominant"]
    span = profile["transitions"].get(dom["span"], {})
    lines = [f"[bold]source[/]: {profile['source']} -- {profile['visibility_note']}"]
    if span.get("n"):
        lines.append(f"[bold]{dom['span']}[/]: p50 {_ms(span['p50'])} ms, "
                     f"p99 {_ms(span['p99'])} ms over {span['n']} ports")
    if dom.get("transition"):
        lines.append(f"[bold red]dominant stage: {dom['transition']}[/] -- "
                     f"{dom['share']:.0%} of the summed p50s ({_ms(dom['p50_ms'])} ms)")
    cpu = profile.get("cpu")
    if cpu and cpu["seconds"]:
        parts = [f"{s:.2f} s for {name}" for name, s in cpu["seconds"].items()]
        lines.append(f"CPU over the storm ({cpu['window_s']:.1f} s): " + ", ".join(parts))
    return "\n".join(lines)


def print_summary(profile: Mapping[str, Any], console: Console | None = None) -> None:
    """Print the headline and tables of a profile document."""
    console = console or Console()
    console.print(headline(profile))
    for table in (transitions_table(profile), stragglers_table(profile), cpu_table(profile),
                  sql_table(profile)):
        if table is not None:
            console.print(table)
    for component, data in (profile.get("cprofile") or {}).items():
        top = data.get("top", [])[:5]
        if top:
            names = ", ".join(f"{r['function']} {r['cumtime_s']:.2f}s" for r in top)
            console.print(f"[bold]cProfile {component}[/]: {names}")
