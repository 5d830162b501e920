"""Optional cProfile per component, and the top functions for the report.

`profiled(component, directory)` profiles the calling thread while the block
runs and dumps `<directory>/<component>.pstats` (load it with `pstats` or
`snakeviz`). With `directory=None` it does nothing, so callers can wrap their
main unconditionally. cProfile sees only the thread that enabled it; in
vifwire each component runs its asyncio loop on its main thread, which is where
the Python work is.

`top_functions(path, n)` reads a .pstats file back into JSON-ready rows sorted
by cumulative time.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def profiled(component: str, directory: Path | None) -> Iterator[cProfile.Profile | None]:
    """Profile the block; dump `<directory>/<component>.pstats` at the end."""
    if directory is None:
        yield None
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield profiler
    finally:
        profiler.disable()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{component}.pstats"
        if path.exists():  # several processes of one component: keep each
            path = directory / f"{component}-{os.getpid()}.pstats"
        profiler.dump_stats(str(path))


def top_functions(path: Path, n: int = 15) -> list[dict[str, Any]]:
    """The n functions with the most cumulative time in a .pstats file."""
    stats = pstats.Stats(str(path))
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = getattr(stats, "total_tt", 0.0) or 0.0
    rows = []
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in table.items():
        rows.append({
            "function": func,
            "where": f"{_short(filename)}:{line}" if line else filename,
            "ncalls": ncalls,
            "tottime_s": round(tottime, 6),
            "cumtime_s": round(cumtime, 6),
        })
    rows.sort(key=lambda r: r["cumtime_s"], reverse=True)
    return [{**r, "cum_share": round(r["cumtime_s"] / total, 4) if total else None}
            for r in rows[:n]]


def summarize_dir(directory: Path, n: int = 15) -> dict[str, Any]:
    """{component: {"file", "top"}} for every .pstats file in `directory`."""
    out: dict[str, Any] = {}
    for path in sorted(directory.glob("*.pstats")):
        try:
            out[path.stem] = {"file": path.name, "top": top_functions(path, n)}
        except (OSError, EOFError, TypeError, ValueError) as exc:
            out[path.stem] = {"file": path.name, "error": str(exc), "top": []}
    return out


def _short(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("site-packages", "src", "lib"):
        if anchor in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(anchor):])
    return "/".join(parts[-2:])
