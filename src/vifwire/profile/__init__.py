"""The profiler: where each port's time went during a boot storm, as one command.

Raw material is written during a run into one directory (SCHEMA.md lists it):
trace events from every component (vifwire.trace), SQL probe snapshots from the
server (`sql.install_sql_probe`), the resource timeline (`resources.ResourceSampler`)
and optional cProfile dumps (`cprof.profiled`). `report.render(dir)` turns that
directory into profile.json (schema "vifwire-profile/1") and a self-contained
report.html; `summary.print_summary(profile)` prints the terminal tables.

Modules: `analysis` (pure timeline maths), `sql`, `resources`, `cprof` (probes),
`report` (assembly), `summary` (rich), `html`, `diagrams`, `svg` (the page),
`schema` (JSON Schema of profile.json).
"""

from vifwire.profile.cprof import profiled, top_functions
from vifwire.profile.report import build_profile, render
from vifwire.profile.resources import ResourceSampler, ResourceTimeline
from vifwire.profile.sql import SqlProbe, install_sql_probe
from vifwire.profile.summary import print_summary

__all__ = ["ResourceSampler", "ResourceTimeline", "SqlProbe", "build_profile",
           "install_sql_probe", "print_summary", "profiled", "render", "top_functions"]
