"""The two pictures of port life: a UML-style sequence diagram and a Gantt chart.

Sequence diagram: lifelines compute, server, agent, ovsdb; one row per stage
mark of the chosen ports (the busiest instant's, see analysis.busiest_ports),
in time order, each an arrow from the stage's sender to its receiver
(analysis.STAGE_MESSAGES) labelled with the stage, the port and the time since
the first row. Idle gaps longer than GAP_MS are drawn as a break with their
length, which is where a port waiting for the next agent iteration shows.

Gantt: one row per port, x = wall clock since the first event, one coloured
segment per transition between the port's consecutive marked stages.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from vifwire.profile import analysis
from vifwire.profile.svg import FONT, Scale, color, esc, fmt, nice_ticks

LIFELINES = ("compute", "server", "agent", "ovsdb")
GAP_MS = 50.0
MAX_GANTT_ROWS = 400


def transition_colors(names: Sequence[str]) -> dict[str, str]:
    return {name: color(i) for i, name in enumerate(names)}


def sequence_diagram(timelines: analysis.Timelines, ports: Sequence[str],
                     width: int = 900) -> str:
    rows = sorted((t, stage, port) for port in ports
                  for stage, t in timelines.get(port, {}).items()
                  if stage in analysis.STAGE_MESSAGES)
    if not rows:
        return '<p class="muted">No events to draw.</p>'
    port_color = {p: color(i) for i, p in enumerate(ports)}
    left, top, row_h = 120, 46, 24
    lane = (width - left - 130) / (len(LIFELINES) - 1)
    xs = {name: left + 20 + i * lane for i, name in enumerate(LIFELINES)}
    t0 = rows[0][0]
    body: list[str] = []
    y = top
    prev = t0
    for t, stage, port in rows:
        gap = (t - prev) * 1000
        if gap > GAP_MS:
            body.append(f'<g class="gap"><line x1="{left}" y1="{y + 14}" x2="{width - 10}" '
                        f'y2="{y + 14}" stroke="#bbb" stroke-dasharray="2 4"/>'
                        f'<text x="{width - 12}" y="{y + 10}" text-anchor="end" fill="#888">'
                        f'{fmt(gap)} ms later</text></g>')
            y += 18
        y += row_h
        prev = t
        src, dst = analysis.STAGE_MESSAGES[stage]
        c = port_color[port]
        x1, x2 = xs[src], xs[dst]
        dash = ' stroke-dasharray="5 3"' if stage in ("seen", "event_received") else ""
        label = f"{stage} {port[:8]}"
        tip = f"{port} {stage} at +{(t - t0) * 1000:.1f} ms"
        body.append(f'<g class="msg" data-port="{esc(port)}"><title>{esc(tip)}</title>')
        body.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" fill="#555">'
                    f'+{(t - t0) * 1000:.1f} ms</text>')
        if src == dst:
            body.append(f'<path d="M{x1:.1f},{y - 8} h30 v12 h-30" fill="none" stroke="{c}" '
                        f'stroke-width="1.5" marker-end="url(#arrow)"/>'
                        f'<text x="{x1 + 36:.1f}" y="{y}" fill="{c}">{esc(label)}</text>')
        else:
            body.append(f'<line x1="{x1:.1f}" y1="{y}" x2="{x2:.1f}" y2="{y}" stroke="{c}" '
                        f'stroke-width="1.5"{dash} marker-end="url(#arrow)"/>'
                        f'<text x="{(x1 + x2) / 2:.1f}" y="{y - 4}" text-anchor="middle" '
                        f'fill="{c}">{esc(label)}</text>')
        body.append("</g>")
    height = y + 30
    head = [f'<svg class="chart sequence" width="{width}" height="{height}" {FONT}>',
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            'fill="#444"/></marker></defs>']
    for name, x in xs.items():
        head.append(f'<rect x="{x - 45:.1f}" y="8" width="90" height="24" rx="3" fill="#f4f4f4" '
                    f'stroke="#444"/><text x="{x:.1f}" y="24" text-anchor="middle" '
                    f'font-weight="bold">{esc(name)}</text><line class="lifeline" x1="{x:.1f}" '
                    f'y1="32" x2="{x:.1f}" y2="{height - 10}" stroke="#999" '
                    f'stroke-dasharray="4 4"/>')
    return "".join(head + body) + "</svg>"


def gantt(timelines: analysis.Timelines, colors: Mapping[str, str], width: int = 1100) -> str:
    ports = sorted((p for p, st in timelines.items() if len(st) > 1),
                   key=lambda p: min(timelines[p].values()))
    if not ports:
        return '<p class="muted">No port has two stages.</p>'
    shown = ports[:MAX_GANTT_ROWS]
    t0 = min(min(timelines[p].values()) for p in shown)
    t1 = max(max(timelines[p].values()) for p in shown)
    left, top, row_h = 90, 24, max(4, min(14, 900 // len(shown)))
    height = top + row_h * len(shown) + 30
    x = Scale(0.0, (t1 - t0) * 1000, left, width - 10)
    out = [f'<svg class="chart gantt" width="{width}" height="{height}" {FONT}>']
    for t in nice_ticks(x.lo, x.hi, 8):
        px = x(t)
        out.append(f'<line x1="{px:.1f}" y1="{top - 4}" x2="{px:.1f}" y2="{height - 26}" '
                   f'stroke="#eee"/><text x="{px:.1f}" y="{height - 12}" '
                   f'text-anchor="middle">{fmt(t)}</text>')
    out.append(f'<text x="{width - 10}" y="{height - 1}" text-anchor="end" fill="#555">'
               f'ms since first event</text>')
    for i, port in enumerate(shown):
        st = timelines[port]
        y = top + i * row_h
        stages = list(st)
        out.append(f'<g class="row" data-port="{esc(port)}">')
        if row_h >= 9:
            out.append(f'<text x="{left - 4}" y="{y + row_h - 3}" text-anchor="end" '
                       f'font-size="9">{esc(port[:10])}</text>')
        for a, b in itertools.pairwise(stages):
            key = analysis.transition_key(a, b)
            xa, xb = x((st[a] - t0) * 1000), x((st[b] - t0) * 1000)
            ms = (st[b] - st[a]) * 1000
            out.append(f'<rect class="seg" x="{xa:.1f}" y="{y + 1}" width="{max(xb - xa, 1):.1f}" '
                       f'height="{row_h - 2}" fill="{colors.get(key, "#ccc")}">'
                       f'<title>{esc(port)} {esc(key)} {ms:.1f} ms</title></rect>')
        out.append("</g>")
    out.append("</svg>")
    more = len(ports) - len(shown)
    note = f'<p class="muted">{more} more ports not drawn.</p>' if more > 0 else ""
    return "".join(out) + note


def legend(colors: Mapping[str, str]) -> str:
    items = "".join(f'<span class="key"><i style="background:{c}"></i>{esc(name)}</span>'
                    for name, c in colors.items())
    return f'<div class="legend">{items}</div>'
