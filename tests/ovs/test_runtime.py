import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vifwire.ovs.runtime import OvsError, OvsRuntime
from vifwire.procs import process_alive
from vifwire.settings import OvsSettings

pytestmark = pytest.mark.ovs


@pytest.fixture
def netns() -> Iterator[str]:
    # A netdev switch owns tap devices ("ovs-netdev", one per bridge): give it a host of its own.
    name = f"vwr-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def runtime(tmp_path: Path, netns: str) -> Iterator[OvsRuntime]:
    rt = OvsRuntime(OvsSettings(run_dir=tmp_path / "ovs",
                                integration_bridge=f"br-r{uuid.uuid4().hex[:6]}"), netns=netns)
    yield rt
    rt.destroy()


def links(netns: str) -> set[str]:
    out = subprocess.run(["ip", "-n", netns, "-br", "link"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()}


def test_start_creates_a_private_switch_with_a_netdev_bridge(runtime: OvsRuntime) -> None:
    runtime.start()
    assert runtime.running()
    bridge = runtime.settings.integration_bridge
    assert runtime.vsctl("list-br").split() == [bridge]
    assert runtime.vsctl("get", "Bridge", bridge, "datapath_type").strip() == "netdev"
    assert "actions=NORMAL" in runtime.ofctl("dump-flows", bridge)
    # appctl reaches this run dir's vswitchd, not a system one.
    assert runtime.appctl("ovs-vswitchd", "coverage/show").startswith("Event coverage")


def test_start_is_idempotent_and_stop_kills_only_its_pids(runtime: OvsRuntime) -> None:
    runtime.start()
    pids = {d: runtime.pid(d) for d in ("ovsdb-server", "ovs-vswitchd")}
    runtime.start()
    assert {d: runtime.pid(d) for d in pids} == pids
    bridge = runtime.settings.integration_bridge
    assert {bridge, "ovs-netdev"} <= links(runtime.netns or "")
    runtime.stop()
    assert not runtime.running()
    # The datapath's persistent taps went with the daemons.
    assert not {bridge, "ovs-netdev"} & links(runtime.netns or "")
    for pid in pids.values():
        assert pid is not None
        assert not process_alive(pid)
    # The database survives a stop: restarting keeps the bridge.
    runtime.start()
    assert runtime.settings.integration_bridge in runtime.vsctl("list-br")


def test_unreachable_switch_is_a_clear_error(tmp_path: Path) -> None:
    runtime = OvsRuntime(OvsSettings(run_dir=tmp_path / "nothing"))
    with pytest.raises(OvsError, match="failed"):
        runtime.vsctl("list-br", timeout=1)


def test_stale_pid_file_is_not_trusted(tmp_path: Path) -> None:
    run_dir = tmp_path / "ovs"
    run_dir.mkdir()
    (run_dir / "ovsdb-server.pid").write_text(f"{os.getpid()}\n")  # pytest, not ovsdb-server
    assert OvsRuntime(OvsSettings(run_dir=run_dir)).pid("ovsdb-server") is None


def test_ovsdb_json_parser_is_compiled() -> None:
    """scripts/install.sh links Debian's compiled JSON parser into the venv; without it
    the agent's IDL lexes every OVSDB update in Python, ~36x slower."""
    import ovs.json

    assert ovs.json.PARSER == ovs.json.PARSER_C
