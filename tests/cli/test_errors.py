"""The CLI answers bad situations with one clear line and a non-zero exit, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import free_port

VIFWIRE = [sys.executable, "-m", "vifwire.cli.main"]


def run(*args: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIFWIRE_RUN_DIR": str(run_dir), "COLUMNS": "200"}
    return subprocess.run([*VIFWIRE, *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_status_of_a_stopped_stack_says_so(tmp_path: Path) -> None:
    # A port nobody listens on: `status` also asks the API, and 9696 may be another's.
    done = run("--api-port", str(free_port()), "status", run_dir=tmp_path)
    assert done.returncode == 3
    assert "stack: stopped" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="boot needs root")
def test_boot_against_an_unreachable_neutron_is_one_line(tmp_path: Path) -> None:
    done = run("--nova-url", "http://127.0.0.1:18774/v2.1", "boot", "--count", "1",
               "--target", "http://127.0.0.1:9", "--network", "private", run_dir=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr


@pytest.mark.parametrize(("nova_url", "why"), [
    ("https//nova:8774/v2.1", "must start with http:// or https://"),
    ("http://nova:port/v2.1", "has a bad port"),
])
def test_stack_with_an_unusable_nova_url_is_one_error(tmp_path: Path, nova_url: str,
                                                      why: str) -> None:
    """Refused before anything starts, instead of a notifier failing while the outbox grows.
    (`stack` is the foreground server: its INFO log lines may precede the error.)"""
    done = run("--nova-url", nova_url, "--api-port", "9894", "stack", run_dir=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error: Nova URL {nova_url!r} {why}"), done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="up needs root")
def test_up_with_an_unusable_nova_url_is_one_line(tmp_path: Path) -> None:
    netns = f"vwnova-{os.getpid()}"
    options = ("--ovs-netns", netns, "--api-port", "9895", "--nova-url", "nova:8774/v2.1")
    try:
        done = run(*options, "up", run_dir=tmp_path)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert lines == ["error: Nova URL 'nova:8774/v2.1' must start with http:// or "
                         "https://"], done.stderr
    finally:
        run(*options, "down", run_dir=tmp_path)
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                       text=True).stdout


def test_bad_option_value_is_rejected(tmp_path: Path) -> None:
    done = run("boot", "--count", "0", run_dir=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_down_when_nothing_runs_is_fine(tmp_path: Path) -> None:
    done = run("down", run_dir=tmp_path)
    assert done.returncode == 0
    assert "not running" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="up needs root")
def test_up_with_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    netns = f"vwdb-{os.getpid()}"
    options = ("--ovs-netns", netns, "--api-port", "9893",
               "--database-url", "postgresql+psycopg://root@127.0.0.1:1/test")
    try:
        done = run(*options, "up", run_dir=tmp_path)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, done.stderr
        assert "database postgresql+psycopg://root@127.0.0.1:1/test is not reachable" in lines[0]
        assert "Connection refused" in lines[0]
    finally:
        run(*options, "down", run_dir=tmp_path)
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                       text=True).stdout
