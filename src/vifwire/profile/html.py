"""report.html: one self-contained page from a profile document.

Everything is inline -- CSS, SVG drawn here in Python (svg.py, diagrams.py) and
a few lines of vanilla JS that highlight one port across the sequence diagram
and the Gantt chart on hover -- so the file opens offline, from a mail
attachment or a CI artifact, with nothing fetched at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vifwire.profile import analysis, diagrams, svg
from vifwire.profile.svg import esc

_CSS = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 9px;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.dominant td{background:#fde2e1;font-weight:bold}.muted{color:#888}
.callout{background:#fff6e0;border-left:4px solid #f28e2b;padding:8px 12px;margin:12px 0}
.legend{margin:6px 0}.key{margin-right:14px;white-space:nowrap}
.key i{display:inline-block;width:10px;height:10px;margin-right:4px}
.grid{display:flex;flex-wrap:wrap;gap:8px}.hl{opacity:1!important}
svg .dim{opacity:.15}code{font-size:12px}
"""

_JS = """
(function(){
  var marks=document.querySelectorAll('[data-port]');
  function set(port){
    for(var i=0;i<marks.length;i++){
      var m=marks[i];
      if(port===null||m.getAttribute('data-port')===port){m.classList.remove('dim');}
      else{m.classList.add('dim');}
    }
  }
  for(var i=0;i<marks.length;i++){
    marks[i].addEventListener('mouseenter',function(e){set(e.currentTarget.getAttribute('data-port'));});
    marks[i].addEventListener('mouseleave',function(){set(null);});
  }
  document.body.setAttribute('data-ready','1');
})();
"""


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(head: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(row) + "</tr>")
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"


def _td(value: object, numeric: bool = False) -> str:
    return f'<td class="n">{esc(value)}</td>' if numeric else f"<td>{esc(value)}</td>"


def _transitions(profile: Mapping[str, Any]) -> str:
    dom = profile["dominant"]
    rows, classes = [], []
    for name, st in profile["transitions"].items():
        share = dom["shares"].get(name)
        rows.append([_td(name), _td(st["n"], True),
                     *(_td(_num(st.get(k)), True) for k in ("min", "p50", "p90", "p99", "max")),
                     _td(f"{share:.0%}" if share is not None else "", True)])
        classes.append("dominant" if name == dom["transition"] else "")
    callout = ""
    if dom["transition"]:
        callout = (f'<div class="callout">Dominant stage of {esc(dom["span"])}: '
                   f'<b>{esc(dom["transition"])}</b>, {dom["share"]:.0%} of the summed '
                   f'medians ({_num(dom["p50_ms"])} of {_num(dom["p50_total_ms"])} ms).</div>')
    table = _table(["transition", "n", "min ms", "p50 ms", "p90 ms", "p99 ms", "max ms",
                    "share of p50"], rows, classes)
    return callout + table


def _stragglers(profile: Mapping[str, Any]) -> str:
    rows = [[_td(r["port"]), _td(_num(r["total_ms"]), True), _td(r["worst"] or "-"),
             _td(_num(r["worst_ms"]), True)] for r in profile["stragglers"]]
    if not rows:
        return '<p class="muted">No port has both plugged and event_received.</p>'
    return _table(["port", "plugged->event_received ms", "held longest by", "ms"], rows)


def _histograms(profile: Mapping[str, Any], colors: Mapping[str, str]) -> str:
    charts = []
    for name, st in profile["transitions"].items():
        values = list(analysis.durations_ms(profile["ports"], st["from"], st["to"]).values())
        charts.append(svg.histogram(values, title=name, fill=colors.get(name, "#555")))
    return f'<div class="grid">{"".join(charts)}</div>'


def _cpu_tables(cpu: Mapping[str, Any]) -> str:
    """Storm-only CPU (the headline, as the bench counts it) beside the whole window,
    each saying what it includes, and the profiler's own cost."""
    whole = cpu.get("whole") or {}
    names = list(cpu["seconds"])
    head = ["component", f"storm CPU s ({cpu['window_s']:.1f} s)",
            f"storm per VM ms ({cpu['vms']} VMs)"]
    if whole:
        head += [f"whole window CPU s ({whole['window_s']:.1f} s)", "whole per VM ms"]
    rows = []
    for n in names:
        row = [_td(n), _td(f"{cpu['seconds'][n]:.2f}", True),
               _td(f"{cpu['per_vm'].get(n, 0) * 1000:.2f}", True)]
        if whole:
            row += [_td(f"{whole['seconds'].get(n, 0):.2f}", True),
                    _td(f"{whole['per_vm'].get(n, 0) * 1000:.2f}", True)]
        rows.append(row)
    notes = [f"Storm: {cpu.get('includes', '')}."]
    if whole:
        notes.append(f"Whole window: {whole['includes']}.")
    profiler = cpu.get("profiler") or {}
    if profiler.get("sampler_cpu_s") is not None:
        notes.append(f"Profiler: the sampler used {profiler['sampler_cpu_s']:.2f} s of CPU. "
                     f"{profiler['note']}")
    return _table(head, rows) + "".join(
        f'<p class="muted">{esc(n)}</p>' for n in notes)


def _resources(profile: Mapping[str, Any]) -> str:
    res, cpu = profile.get("resources"), profile.get("cpu")
    if not res:
        return '<p class="muted">No resource samples (the sampler was not running).</p>'
    t0 = res["system"][0]["t"] if res["system"] else 0.0
    per = {name: [(p["t"] - t0, p["cpu_pct"]) for p in pts[1:]]
           for name, pts in res["samples"].items()}
    system = {k: [(p["t"] - t0, p[k]) for p in res["system"][1:]] for k in ("usr", "sys", "idle")}
    mem = {"host used": [(p["t"] - t0, p["mem_used"] / 2**20) for p in res["system"]],
           "host free": [(p["t"] - t0, p["mem_free"] / 2**20) for p in res["system"]]}
    rss = {name: [(p["t"] - t0, p["rss"] / 2**20) for p in pts]
           for name, pts in res["samples"].items()}
    table = _cpu_tables(cpu) if cpu else ""
    return table + '<div class="grid">' + "".join([
        svg.line_chart(per, title="CPU % per component (100 = one core)", x_label="s since start",
                       y_label="%"),
        svg.line_chart(system, title="Host CPU (dstat total-cpu-usage)", x_label="s since start",
                       y_label="%"),
        svg.line_chart(mem, title="Host memory", x_label="s since start", y_label="MiB"),
        svg.line_chart(rss, title="RSS per component", x_label="s since start", y_label="MiB"),
    ]) + "</div>"


def _sql(profile: Mapping[str, Any]) -> str:
    sql = profile.get("sql")
    if not sql:
        return '<p class="muted">No SQL probe output (embedded server only).</p>'
    ratio, share = sql.get("cache_hit_ratio"), sql.get("build_share")
    summary = [
        ("statements", sql["statements"]), ("per port lifecycle", sql.get("per_port", "-")),
        ("build s (compile + params)", f"{sql['build_s']:.3f}"),
        ("execute s (DBAPI)", f"{sql['execute_s']:.3f}"),
        ("build share", f"{share:.0%}" if share is not None else "-"),
        ("statement cache hit ratio", f"{ratio:.0%}" if ratio is not None else "-"),
        ("cache outcomes", ", ".join(f"{k} {v}" for k, v in sorted(sql["cache"].items()))),
    ]
    first = _table(["metric", "value"], [[_td(k), _td(v, True)] for k, v in summary])
    top = [[f"<td><code>{esc(r['sql'])}</code></td>", _td(r["count"], True),
            _td(f"{r['build_s'] * 1000:.1f}", True), _td(f"{r['execute_s'] * 1000:.1f}", True)]
           for r in sql.get("top", [])]
    return first + _table(["statement", "count", "build ms", "execute ms"], top)


def _cprofile(profile: Mapping[str, Any]) -> str:
    parts = []
    for component, data in (profile.get("cprofile") or {}).items():
        rows = [[_td(r["function"]), f"<td><code>{esc(r['where'])}</code></td>",
                 _td(r["ncalls"], True), _td(f"{r['tottime_s']:.3f}", True),
                 _td(f"{r['cumtime_s']:.3f}", True)] for r in data.get("top", [])]
        parts.append(f"<h3>{esc(component)} <span class='muted'>({esc(data['file'])})</span></h3>"
                     + _table(["function", "where", "calls", "tottime s", "cumtime s"], rows))
    return "".join(parts) or '<p class="muted">No cProfile dumps.</p>'


def render_html(profile: Mapping[str, Any]) -> str:
    span = analysis.transition_key(*analysis.END_TO_END)
    pairs = [k for k in profile["transitions"] if k != span]
    colors = diagrams.transition_colors(pairs)
    colors.setdefault(span, "#333")
    busiest = profile.get("busiest") or {"ports": [], "in_flight": 0}
    storm = profile.get("storm")
    sections = [
        ("Stage transitions", _transitions(profile)),
        ("Stragglers", _stragglers(profile)),
        (f"Sequence diagram of the busiest moment ({busiest['in_flight']} ports in flight, "
         f"{len(busiest['ports'])} drawn)",
         diagrams.sequence_diagram(profile["ports"], busiest["ports"])),
        ("Per-port timeline", diagrams.legend(colors) + diagrams.gantt(profile["ports"], colors)),
        ("Latency histograms", _histograms(profile, colors)),
        ("CPU and memory", _resources(profile)),
        ("SQL", _sql(profile)),
        ("cProfile: top functions by cumulative time", _cprofile(profile)),
    ]
    if storm:
        sections.append(("Storm summary", f"<pre>{esc(_pretty(storm))}</pre>"))
    body = "".join(f"<h2>{esc(title)}</h2>{html}" for title, html in sections)
    header = (f"<h1>vifwire profile</h1><p><b>source:</b> {esc(profile['source'])} &middot; "
              f"{len(profile['ports'])} ports &middot; clock: {esc(profile['clock'])}</p>"
              f"<p class=\"visibility\">{esc(profile['visibility_note'])}</p>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>vifwire profile</title>"
            f"<style>{_CSS}</style></head><body>{header}{body}<script>{_JS}</script>"
            "</body></html>")


def _pretty(data: Mapping[str, Any]) -> str:
    import json

    return json.dumps(data, indent=2, default=str)
