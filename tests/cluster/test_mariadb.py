"""A rig on a private MariaDB (`--database mariadb`): up, boot, down leaving nothing."""

from __future__ import annotations

import os
import shutil

import orjson
import pytest

from vifwire.cluster.state import STATE_FILE, RigState, current_link
from vifwire.procs import process_alive

from .helpers import free_port, netns_exists, traversable_dir, vifwire

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, OVS)")


def test_mariadb_rig() -> None:
    if shutil.which("mariadbd") is None:
        pytest.skip("mariadbd is not installed")
    run_dir = traversable_dir()
    try:
        done = vifwire(run_dir, "cluster", "up", "--hosts", "1", "--workers", "2",
                       "--database", "mariadb", "--api-port", str(free_port()))
        assert done.returncode == 0, done.stderr
        state = RigState.load(current_link(run_dir) / STATE_FILE)
        assert state.database == "mariadb"
        assert state.database_url.startswith("mysql+pymysql://root@127.0.0.1:")
        assert ":3306/" not in state.database_url
        status = vifwire(run_dir, "cluster", "status")
        assert status.returncode == 0, status.stdout

        booted = vifwire(run_dir, "boot", "--count", "2", "--json", "--timeout", "60")
        summary = orjson.loads(booted.stdout)
        assert summary["ok"], summary
        assert summary["hosts"] == {state.hosts[0].name: 2}
    finally:
        down = vifwire(run_dir, "cluster", "down")
        shutil.rmtree(run_dir, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert not any(process_alive(p.pid) for p in state.processes)
    assert not any(netns_exists(n) for n in state.netns)
