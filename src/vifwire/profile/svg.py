"""Tiny inline-SVG chart primitives for report.html (no libraries, no network).

Each function returns one `<svg>` element as a string, sized in pixels, with
native `<title>` tooltips. Scales are linear; ticks are "nice" 1-2-5 steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#17becf")
FONT = 'font-family="system-ui,sans-serif" font-size="11"'


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


class Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float) -> None:
        self.lo, self.hi = lo, hi if hi > lo else lo + 1.0
        self.a, self.b = a, b

    def __call__(self, v: float) -> float:
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)


def _axes(x: Scale, y: Scale, width: int, height: int, x_label: str, y_label: str,
          margin: tuple[int, int, int, int]) -> list[str]:
    top, right, bottom, left = margin
    out = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" '
           f'y2="{height - bottom}" stroke="#888"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#888"/>']
    for t in nice_ticks(x.lo, x.hi):
        px = x(t)
        out.append(f'<line x1="{px:.1f}" y1="{height - bottom}" x2="{px:.1f}" '
                   f'y2="{height - bottom + 4}" stroke="#888"/>'
                   f'<text x="{px:.1f}" y="{height - bottom + 15}" text-anchor="middle">'
                   f'{fmt(t)}</text>')
    for t in nice_ticks(y.lo, y.hi, 4):
        py = y(t)
        out.append(f'<line x1="{left}" y1="{py:.1f}" x2="{width - right}" y2="{py:.1f}" '
                   f'stroke="#eee"/><text x="{left - 5}" y="{py + 4:.1f}" text-anchor="end">'
                   f'{fmt(t)}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 4}" '
               f'text-anchor="middle" fill="#555">{esc(x_label)}</text>')
    out.append(f'<text x="12" y="{(top + height - bottom) / 2:.0f}" fill="#555" '
               f'text-anchor="middle" transform="rotate(-90 12 {(top + height - bottom) / 2:.0f})"'
               f'>{esc(y_label)}</text>')
    return out


def line_chart(series: Mapping[str, Sequence[tuple[float, float]]], *, title: str,
               x_label: str, y_label: str, width: int = 580, height: int = 240,
               y_min: float | None = 0.0) -> str:
    margin = (28, 150, 34, 56)
    points = [p for s in series.values() for p in s]
    if not points:
        return f'<svg class="chart" width="{width}" height="40" {FONT}><text x="8" y="20">' \
               f'{esc(title)}: no samples</text></svg>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    y_lo = min(ys) if y_min is None else min(y_min, min(ys))
    x = Scale(min(xs), max(xs), margin[3], width - margin[1])
    y = Scale(y_lo, max(ys) * 1.05 or 1.0, height - margin[2], margin[0])
    out = [f'<svg class="chart" width="{width}" height="{height}" {FONT}>',
           f'<text x="{margin[3]}" y="16" font-weight="bold">{esc(title)}</text>',
           *_axes(x, y, width, height, x_label, y_label, margin)]
    for i, (name, pts) in enumerate(series.items()):
        path = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in pts)
        out.append(f'<polyline class="series" fill="none" stroke="{color(i)}" stroke-width="1.6" '
                   f'points="{path}"><title>{esc(name)}</title></polyline>')
        ly = margin[0] + 14 * i + 8
        out.append(f'<rect x="{width - margin[1] + 10}" y="{ly - 8}" width="10" height="10" '
                   f'fill="{color(i)}"/><text x="{width - margin[1] + 24}" y="{ly + 1}">'
                   f'{esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def histogram(values: Sequence[float], *, title: str, x_label: str = "ms", bins: int = 20,
              width: int = 300, height: int = 170, fill: str = PALETTE[0]) -> str:
    margin = (24, 10, 32, 40)
    out = [f'<svg class="chart hist" width="{width}" height="{height}" {FONT}>',
           f'<text x="{margin[3]}" y="14" font-weight="bold">{esc(title)}</text>']
    if not values:
        out.append(f'<text x="{margin[3]}" y="40" fill="#888">not observed</text></svg>')
        return "".join(out)
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / step), bins - 1)] += 1
    x = Scale(lo, hi, margin[3], width - margin[1])
    y = Scale(0, max(counts) * 1.1, height - margin[2], margin[0])
    out.extend(_axes(x, y, width, height, x_label, "ports", margin))
    for i, c in enumerate(counts):
        if c:
            x0, x1 = x(lo + i * step), x(lo + (i + 1) * step)
            out.append(f'<rect class="bar" x="{x0:.1f}" y="{y(c):.1f}" '
                       f'width="{max(x1 - x0 - 1, 1):.1f}" '
                       f'height="{y(0) - y(c):.1f}" fill="{fill}"><title>{fmt(lo + i * step)}-'
                       f'{fmt(lo + (i + 1) * step)} ms: {c}</title></rect>')
    out.append("</svg>")
    return "".join(out)
