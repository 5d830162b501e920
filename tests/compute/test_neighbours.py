"""The ARP table's limits a storm raises (vifwire.compute.neighbours), on files
laid out as /proc/sys's, and read from the real one."""

from __future__ import annotations

from pathlib import Path

import pytest

from vifwire.compute import neighbours


@pytest.fixture
def sysctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for level, value in ((1, 128), (2, 512), (3, 1024)):  # the kernel's defaults
        (tmp_path / f"gc_thresh{level}").write_text(f"{value}\n")
    monkeypatch.setattr(neighbours, "SYSCTL", str(tmp_path / "gc_thresh{}"))
    return tmp_path


def values(path: Path) -> list[int]:
    return [int((path / f"gc_thresh{level}").read_text()) for level in (1, 2, 3)]


def test_a_storm_that_fits_changes_nothing(sysctl: Path) -> None:
    assert neighbours.make_room(100) == {}  # 400 entries under the soft limit, 512
    assert values(sysctl) == [128, 512, 1024]


def test_a_large_storm_raises_every_limit_once(sysctl: Path) -> None:
    assert neighbours.make_room(1000) == {"gc_thresh3": [1024, 65536],
                                          "gc_thresh2": [512, 32768],
                                          "gc_thresh1": [128, 8192]}
    assert values(sysctl) == [8192, 32768, 65536]
    assert neighbours.make_room(1000) == {}


def test_a_limit_above_the_floor_is_never_lowered(sysctl: Path) -> None:
    (sysctl / "gc_thresh3").write_text("100000\n")
    assert neighbours.make_room(1000) == {"gc_thresh2": [512, 32768],
                                          "gc_thresh1": [128, 8192]}
    assert values(sysctl) == [8192, 32768, 100000]


def test_limits_that_cannot_be_written_are_logged_not_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(neighbours, "SYSCTL", str(tmp_path / "missing" / "gc_thresh{}"))
    assert neighbours.make_room(1000) == {}
    assert "cannot make room in the ARP table" in caplog.text


def test_the_real_limits_are_readable() -> None:
    assert [neighbours.read(level) for level in (1, 2, 3)] == sorted(
        neighbours.read(level) for level in (1, 2, 3))
