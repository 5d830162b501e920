"""The embedded database lives where a reboot does not wipe it."""

from __future__ import annotations

from pathlib import Path

from vifwire.settings import DEFAULT_STATE_DIR, STANDARD_RUN_DIR, Settings
from vifwire.stack import adopt_database_from_run_dir


def test_the_standard_run_dir_keeps_its_database_in_the_state_dir() -> None:
    standard = Settings(run_dir=STANDARD_RUN_DIR)
    assert standard.effective_database_url == f"sqlite:///{DEFAULT_STATE_DIR}/vifwire.sqlite"
    assert Path("/var/lib/vifwire") == DEFAULT_STATE_DIR  # not a tmpfs, unlike /var/run


def test_the_standard_run_dir_is_recognised_by_another_name() -> None:
    """On Debian /var/run is /run, and systemd's RuntimeDirectory gives /run/vifwire."""
    if Path("/var/run").resolve() != Path("/run"):
        return  # not such a system: nothing to check
    assert Settings(run_dir=Path("/run/vifwire")).effective_state_dir == DEFAULT_STATE_DIR


def test_another_run_dir_keeps_everything_in_itself(tmp_path: Path) -> None:
    assert Settings(run_dir=tmp_path).effective_database_url == \
        f"sqlite:///{tmp_path}/vifwire.sqlite"
    chosen = Settings(run_dir=tmp_path / "run", state_dir=tmp_path / "state")
    assert chosen.effective_database_url == f"sqlite:///{tmp_path}/state/vifwire.sqlite"


def test_a_database_left_in_the_run_dir_moves_to_the_state_dir(tmp_path: Path) -> None:
    run_dir, state_dir = tmp_path / "run", tmp_path / "state"
    run_dir.mkdir()
    for suffix in ("", "-wal", "-shm"):
        (run_dir / f"vifwire.sqlite{suffix}").write_text(f"data{suffix}")
    settings = Settings(run_dir=run_dir, state_dir=state_dir)
    adopt_database_from_run_dir(settings)
    assert sorted(p.name for p in run_dir.iterdir()) == []
    assert {p.name: p.read_text() for p in state_dir.iterdir()} == {
        "vifwire.sqlite": "data", "vifwire.sqlite-wal": "data-wal",
        "vifwire.sqlite-shm": "data-shm"}


def test_a_database_already_in_the_state_dir_is_never_overwritten(tmp_path: Path) -> None:
    run_dir, state_dir = tmp_path / "run", tmp_path / "state"
    run_dir.mkdir()
    state_dir.mkdir()
    (run_dir / "vifwire.sqlite").write_text("old")
    (state_dir / "vifwire.sqlite").write_text("current")
    adopt_database_from_run_dir(Settings(run_dir=run_dir, state_dir=state_dir))
    assert (state_dir / "vifwire.sqlite").read_text() == "current"
    assert (run_dir / "vifwire.sqlite").read_text() == "old"
