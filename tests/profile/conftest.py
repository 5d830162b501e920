"""Fixtures for the profiler tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from profile_traces import WriteTraces, make_timelines, write_timelines


@pytest.fixture
def write_traces(tmp_path: Path) -> WriteTraces:
    def _write(directory: Path | None = None, **kwargs: object) -> dict[str, dict[str, float]]:
        timelines = make_timelines(**kwargs)  # type: ignore[arg-type]
        write_timelines(directory or tmp_path, timelines)
        return timelines

    return _write
