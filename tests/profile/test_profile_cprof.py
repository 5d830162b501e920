"""cProfile dumps that pstats can load, and their top functions."""

from __future__ import annotations

import pstats
from pathlib import Path

from vifwire.profile.cprof import profiled, summarize_dir, top_functions


def _build_queries(n: int) -> int:
    return sum(len(str(i) * 50) for i in range(n))


def test_profiled_dumps_loadable_stats(tmp_path: Path) -> None:
    with profiled("server", tmp_path) as profiler:
        assert profiler is not None
        _build_queries(200_000)
    path = tmp_path / "server.pstats"
    assert pstats.Stats(str(path)).total_calls > 0  # type: ignore[attr-defined]

    top = top_functions(path, n=5)
    assert len(top) == 5
    assert [r["cumtime_s"] for r in top] == sorted((r["cumtime_s"] for r in top), reverse=True)
    assert "_build_queries" in {r["function"] for r in top}
    row = next(r for r in top if r["function"] == "_build_queries")
    assert row["where"].endswith(f":{_build_queries.__code__.co_firstlineno}")
    assert summarize_dir(tmp_path)["server"]["top"][0]["cumtime_s"] > 0


def test_disabled_is_a_no_op(tmp_path: Path) -> None:
    with profiled("server", None) as profiler:
        assert profiler is None
    assert list(tmp_path.iterdir()) == []


def test_second_process_of_a_component_keeps_both(tmp_path: Path) -> None:
    for _ in range(2):
        with profiled("server", tmp_path):
            _build_queries(10)
    assert len(list(tmp_path.glob("server*.pstats"))) == 2
