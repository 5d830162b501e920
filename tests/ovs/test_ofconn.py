"""The kept OpenFlow connection against a real ovs-vswitchd (netdev, own netns)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vifwire.ovs.model import OvsWriteFailed
from vifwire.ovs.ofconn import OpenFlowConnection
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import OvsSettings

pytestmark = pytest.mark.ovs
COOKIE = 0x7679000000000000


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvsRuntime]:
    netns = f"vwof-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    rt = OvsRuntime(OvsSettings(run_dir=tmp_path_factory.mktemp("ofconn") / "ovs",
                                integration_bridge=f"br-o{uuid.uuid4().hex[:6]}"), netns=netns)
    try:
        rt.start()
        bridge = rt.settings.integration_bridge
        # Patch ports get OpenFlow numbers without any device.
        rt.vsctl("add-port", bridge, "pa", "--", "set", "Interface", "pa", "type=patch",
                 "options:peer=pb", "--", "add-port", bridge, "pb", "--", "set", "Interface",
                 "pb", "type=patch", "options:peer=pa")
        yield rt
    finally:
        rt.destroy()
        subprocess.run(["ip", "netns", "del", netns], check=False)


@pytest.fixture
async def conn(switch: OvsRuntime) -> OpenFlowConnection:
    connection = OpenFlowConnection(switch.run_dir / f"{switch.settings.integration_bridge}.mgmt",
                                    timeout=5.0)
    yield connection  # type: ignore[misc]
    await connection.close()
    switch.ofctl("del-flows", switch.settings.integration_bridge, f"cookie={COOKIE:#x}/-1")


def ours(switch: OvsRuntime) -> list[str]:
    out = switch.ofctl("--names", "--no-stats", "dump-flows", switch.settings.integration_bridge,
                       f"cookie={COOKIE:#x}/-1")
    return sorted(line.strip() for line in out.splitlines() if "cookie=" in line)


def ofport(switch: OvsRuntime, name: str) -> int:
    return int(switch.vsctl("get", "Interface", name, "ofport").strip())


async def test_a_bundle_is_applied_with_names_resolved_by_the_switch(
        switch: OvsRuntime, conn: OpenFlowConnection) -> None:
    await conn.bundle([f"add cookie={COOKIE:#x},priority=5,in_port=pa,actions=output:pb",
                       f"add cookie={COOKIE:#x},table=3,priority=7,reg5=9,ip,"
                       f"nw_src=10.1.0.0/16,actions=ct(commit,zone=NXM_NX_REG6[0..15]),"
                       "resubmit(,4)"])
    assert ours(switch) == [
        f"cookie={COOKIE:#x}, priority=5,in_port=pa actions=output:pb",
        f"cookie={COOKIE:#x}, table=3, priority=7,ip,reg5=0x9,nw_src=10.1.0.0/16 "
        "actions=ct(commit,zone=NXM_NX_REG6[0..15]),resubmit(,4)",
    ]
    assert ofport(switch, "pa") > 0
    # What ovs-ofctl would have written: diff-flows (the agent's restart check)
    # finds no difference (the bridge's own NORMAL rule aside).
    await conn.bundle([f"delete cookie={COOKIE:#x}/-1",
                       f"add cookie={COOKIE:#x},priority=5,in_port=pa,actions=output:pb"])
    wanted = switch.run_dir / "wanted.txt"
    wanted.write_text(f"cookie={COOKIE:#x},priority=5,in_port=pa,actions=output:pb\n"
                      "priority=0,actions=NORMAL\n")
    # Raises unless equal.
    switch.ofctl("diff-flows", "--names", switch.settings.integration_bridge, str(wanted))
    assert conn.bundles == 2


async def test_a_bundle_the_switch_refuses_changes_nothing(
        switch: OvsRuntime, conn: OpenFlowConnection) -> None:
    with pytest.raises(OvsWriteFailed, match="table=255"):
        await conn.bundle([f"add cookie={COOKIE:#x},priority=6,actions=drop",
                           f"add cookie={COOKIE:#x},table=255,priority=1,actions=drop"])
    assert ours(switch) == []
    await conn.bundle([f"add cookie={COOKIE:#x},priority=6,actions=drop"])  # still usable
    assert len(ours(switch)) == 1


async def test_an_unknown_port_name_changes_nothing(switch: OvsRuntime,
                                                    conn: OpenFlowConnection) -> None:
    with pytest.raises(OvsWriteFailed, match="no port named tapnothere"):
        await conn.bundle([f"add cookie={COOKIE:#x},priority=6,actions=drop",
                           f"add cookie={COOKIE:#x},priority=5,in_port=tapnothere,actions=drop"])
    assert ours(switch) == []


async def test_the_connection_comes_back_after_vswitchd_restarts(
        switch: OvsRuntime, conn: OpenFlowConnection) -> None:
    await conn.bundle([f"add cookie={COOKIE:#x},priority=6,actions=drop"])
    pid = switch.pid("ovs-vswitchd")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while switch.pid("ovs-vswitchd") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(OvsWriteFailed):  # nobody listens
        await conn.bundle([f"add cookie={COOKIE:#x},priority=7,actions=drop"])
    switch.start_vswitchd()
    mgmt = Path(switch.run_dir / f"{switch.settings.integration_bridge}.mgmt")
    while not mgmt.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    await conn.bundle([f"add cookie={COOKIE:#x},priority=8,actions=drop"])
    assert [line.split(" ")[1] for line in ours(switch)] == ["priority=8"]
