"""Fixtures: a private Open vSwitch per test, inside its own "host" namespace.

A netdev datapath owns a tap named "ovs-netdev" (and one per bridge) in the
namespace its vswitchd runs in, so two private switches cannot share one
namespace; each test's switch runs in `vwch<id>`, which takes every tap with it
when it is deleted. Everything is removed by the names created here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from vifwire.ovs.runtime import OvsError, OvsRuntime
from vifwire.settings import OvsSettings


def _needs_root_and_ovs() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("ovsdb-server") or not shutil.which("ip"):
        return "needs Open vSwitch and iproute2"
    return None


@pytest.fixture
def short_id() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
def host_netns(short_id: str, unavailable: Callable[[str, object], NoReturn]) -> Iterator[str]:
    reason = _needs_root_and_ovs()
    if reason:
        unavailable("root and Open vSwitch", reason)
    name = f"vwch{short_id}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
def ovs(tmp_path: Path, short_id: str, host_netns: str) -> Iterator[OvsRuntime]:
    bridge = f"br-c{short_id}"
    runtime = OvsRuntime(OvsSettings(run_dir=tmp_path / "ovs", integration_bridge=bridge),
                         netns=host_netns)
    try:
        runtime.start()
        yield runtime
    finally:
        with contextlib.suppress(OvsError):
            runtime.vsctl("--if-exists", "del-br", bridge)
        runtime.destroy()
