"""Crashed-run cleanup: leftovers of a dead run go, a live run's stay."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from vifwire.compute.plug import OvsPlugger
from vifwire.compute.state import RUNNING, RunState, clean_leftovers, load_states
from vifwire.compute.vm import Vm, VmSpec, delete_sync, list_namespaces
from vifwire.ovs.runtime import OvsRuntime

pytestmark = pytest.mark.ovs


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
async def plugger(ovs: OvsRuntime, short_id: str) -> AsyncIterator[OvsPlugger]:
    async with OvsPlugger(ovs.settings, run_id=f"now-{short_id}") as p:
        yield p


async def _leftover(ovs: OvsRuntime, run_id: str, prefix: str, host_netns: str,
                    i: int) -> Vm:
    port = str(uuid.uuid4())
    vm = Vm(VmSpec(port, f"fa:16:3e:00:01:0{i}", f"10.88.0.{i}", 24, 1500, prefix, host_netns))
    await vm.create()
    async with OvsPlugger(ovs.settings, run_id=run_id) as p:
        await p.plug(port, vm.spec.mac, str(uuid.uuid4()))
    return vm


async def test_crashed_run_is_cleaned_live_run_is_kept(
        ovs: OvsRuntime, plugger: OvsPlugger, tmp_path: Path, short_id: str,
        host_netns: str) -> None:
    prefix = f"vwk{short_id}-"
    dead = RunState.new(tmp_path, f"dead-{short_id}", pid=_dead_pid(), host_netns=host_netns)
    live = RunState.new(tmp_path, f"live-{short_id}", pid=os.getppid(), host_netns=host_netns)
    assert live.status == RUNNING and live.alive()
    crashed = await _leftover(ovs, dead.run_id, prefix, host_netns, 1)
    running = await _leftover(ovs, live.run_id, prefix, host_netns, 2)
    dead.add(namespace=crashed.namespace, tap=crashed.tap)
    live.add(namespace=running.namespace, tap=running.tap)
    await dead.commit()
    await live.commit()
    # Someone else's VM: same prefix, listed by no state file of this run dir.
    foreign = f"{prefix}foreign"
    await asyncio.to_thread(subprocess.run, ["ip", "netns", "add", foreign], check=True)
    try:
        report = await clean_leftovers(tmp_path, plugger, None)
        assert report.namespaces == [crashed.namespace]
        assert report.interfaces == [crashed.tap]
        assert report.runs == [dead.run_id]
        assert await asyncio.to_thread(list_namespaces, prefix) == sorted(
            [running.namespace, foreign])
        assert await plugger.run_interfaces() == {running.tap: live.run_id}
        assert [s.run_id for s in load_states(tmp_path)] == [live.run_id]
        # Once that run is over (kept, or its process gone), the next cleanup takes it.
        live.status = "kept"
        live.save()
        report = await clean_leftovers(tmp_path, plugger, None)
        assert report.namespaces == [running.namespace]
        assert await asyncio.to_thread(list_namespaces, prefix) == [foreign]
        assert await plugger.run_interfaces() == {}
        assert load_states(tmp_path) == []
    finally:
        for vm in (crashed, running):
            await vm.delete()
        await asyncio.to_thread(subprocess.run, ["ip", "netns", "del", foreign], check=False)


async def test_state_file_round_trip(tmp_path: Path) -> None:
    state = RunState.new(tmp_path, "r1", neutron_url="http://x")
    state.add(port="p1", network="n1", security_group="g1")
    state.add(port="p1")
    await state.commit()
    loaded = RunState.load(state.path)
    assert (loaded.ports, loaded.networks, loaded.pid) == (["p1"], ["n1"], os.getpid())
    assert loaded.security_groups == ["g1"]
    assert not loaded.alive()  # our own run is never "another live storm"


async def test_state_writes_are_coalesced(tmp_path: Path) -> None:
    state = RunState.new(tmp_path, "r2")
    for i in range(50):
        state.add(port=f"p{i}")
    assert RunState.load(state.path).ports == []  # one write, scheduled for this loop turn
    await state.commit()
    assert RunState.load(state.path).ports == [f"p{i}" for i in range(50)]
    await state.commit()  # nothing pending: returns at once


class SlowFirstStepExecutor(ThreadPoolExecutor):
    """Netlink workers whose first step starts late, as on a busy host."""

    def __init__(self) -> None:
        super().__init__(2)
        self.first = True

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        delay, self.first = (0.3 if self.first else 0.0), False

        def late() -> Any:
            time.sleep(delay)
            return fn(*args, **kwargs)
        return super().submit(late)


async def test_a_vm_whose_creation_is_cancelled_is_still_deleted_whole(
        short_id: str, host_netns: str) -> None:
    """Ctrl-C during a storm: the creating thread cannot be stopped, so the cancel
    waits for it; a teardown right after must then find and remove the namespace."""
    spec = VmSpec(str(uuid.uuid4()), "fa:16:3e:00:00:99", "10.78.0.9", 24,
                  ns_prefix=f"vwx{short_id}-", host_netns=host_netns)
    with SlowFirstStepExecutor() as executor:
        vm = Vm(spec, executor)
        creating = asyncio.create_task(vm.create())
        await asyncio.sleep(0.05)  # the thread is on its way
        creating.cancel()
        try:
            with pytest.raises(asyncio.CancelledError):
                await creating
            await vm.delete()
            await asyncio.sleep(0.4)  # time for a creation that outlived its task
            assert await asyncio.to_thread(list_namespaces, spec.ns_prefix) == []
        finally:
            await asyncio.to_thread(delete_sync, spec.namespace, spec.tap, host_netns)
