"""CPU attribution with real processes: a busy loop and a sleeper."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from vifwire.profile.resources import (
    ResourceSampler,
    ResourceTimeline,
    find_pids,
    storm_components,
)


@pytest.fixture
def busy_and_idle() -> Iterator[tuple[int, int]]:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.3)  # past interpreter start-up, which costs CPU in both
        yield busy.pid, idle.pid
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()


def _cpu_of(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _as_measured(truth: float) -> Any:
    """What the sampler must report for a process that used `truth` CPU seconds in its
    window, read from outside: the machine may be shared, so not "one core"."""
    assert truth > 0.05, "the busy process hardly ran"
    return pytest.approx(truth, abs=0.05 + 0.15 * truth)


def test_busy_process_is_on_top(busy_and_idle: tuple[int, int], tmp_path: Path) -> None:
    busy, idle = busy_and_idle
    sampler = ResourceSampler({"busy": busy, "idle": [idle], "both": [busy, idle]},
                              interval=0.2)
    before = _cpu_of(busy)
    sampler.start()
    time.sleep(1.0)
    timeline = sampler.stop()
    truth = _cpu_of(busy) - before

    seconds = timeline.cpu_seconds()
    assert next(iter(seconds)) in ("busy", "both")
    assert seconds["busy"] == _as_measured(truth)
    assert seconds["idle"] < 0.05
    assert seconds["both"] == pytest.approx(seconds["busy"] + seconds["idle"], abs=0.05)
    busy_samples = timeline.samples["busy"]
    assert len(busy_samples) >= 5  # <= 250 ms apart over ~1 s
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(busy_samples)]
    assert max(gaps) < 0.4
    assert max(s["cpu_pct"] for s in busy_samples) > 50 * truth  # half its mean rate, or more
    assert all(s["rss"] > 0 for s in busy_samples)
    assert {"usr", "sys", "idle", "mem_used", "mem_free"} <= timeline.system[-1].keys()

    again = ResourceTimeline.read(timeline.write(tmp_path / "resources.json"))
    assert again.cpu_seconds() == seconds


def test_vanished_process_keeps_its_cpu_seconds() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "x = sum(range(3_000_000))"])
    sampler = ResourceSampler({"short": proc.pid, "ghost": 2**22 + 12345}, interval=0.05)
    sampler.start()
    proc.wait()
    time.sleep(0.2)
    timeline = sampler.stop()
    cpu = [s["cpu_s"] for s in timeline.samples["short"]]
    assert cpu == sorted(cpu)  # never goes backwards once the process is gone
    assert timeline.cpu_seconds()["ghost"] == 0.0


def test_interval_is_capped_and_find_pids() -> None:
    assert ResourceSampler({"me": os.getpid()}, interval=1.0).interval == 0.25
    me = psutil.Process().name()
    assert os.getpid() in find_pids([me])[me]


def test_storm_components_names() -> None:
    comps = storm_components(stack=os.getpid(), server=[1, 2], compute=3, include_ovs=False)
    assert comps == {"stack (server+agent)": [os.getpid()], "server workers": [1, 2],
                     "compute": [3]}


BUSY_THREAD = """
import ctypes, threading, time
def spin():
    ctypes.CDLL(None).prctl(15, b"vw-busy", 0, 0, 0)
    end = time.time() + 30
    while time.time() < end:
        pass
threading.Thread(target=spin, daemon=True).start()
time.sleep(30)
"""


def test_thread_groups_split_one_process_by_thread_name() -> None:
    import subprocess
    import sys

    from vifwire.profile.resources import ThreadGroup

    child = subprocess.Popen([sys.executable, "-c", BUSY_THREAD])
    try:
        time.sleep(0.3)  # let the thread name itself
        sampler = ResourceSampler({
            "busy": ThreadGroup(child.pid, "vw-busy"),
            "rest": ThreadGroup(child.pid, "vw-busy", exclude=True),
        }, interval=0.1)
        before = _cpu_of(child.pid)
        sampler.start()
        time.sleep(1.0)
        cpu = sampler.stop().cpu_seconds()
        truth = _cpu_of(child.pid) - before  # the process: all but a sliver is the thread
    finally:
        child.kill()
        child.wait()
    assert cpu["busy"] == _as_measured(truth)
    assert cpu["rest"] < 0.1


def test_sampler_process_attributes_cpu_from_outside(tmp_path: Path) -> None:
    """The profiler's sampler runs in its own process: it must still see who burns CPU."""
    import subprocess
    import sys

    from vifwire.profile.sampler_process import SamplerProcess

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler = SamplerProcess({"busy": [busy.pid], "idle": [idle.pid]},
                                 tmp_path / "resources.json", interval=0.1).start()
        before = _cpu_of(busy.pid)  # the first sample is taken
        time.sleep(1.0)
        truth = _cpu_of(busy.pid) - before  # the last is yet to come
        timeline = sampler.stop()
    finally:
        for child in (busy, idle):
            child.kill()
            child.wait()
    cpu = timeline.cpu_seconds()
    assert list(cpu) == ["busy", "idle"]
    # Its window holds `truth` and the moment stop() takes to reach the last sample.
    assert truth - 0.05 <= cpu["busy"] <= truth + 0.1 + 0.3 * truth
    assert cpu["idle"] < 0.05
    assert len(timeline.samples["busy"]) >= 8  # sampled every 100 ms
    assert (tmp_path / "resources.json").exists()
