"""The report's CPU per VM and the storm bench's agree for the same storm.

bench/storm.py counts a process's CPU from the storm's start to the last
network-vif-plugged; the report's headline must count the same window (not the
teardown after it), from samples taken by the real sampler process. A child
process stands in for the stack: it burns CPU for the "storm", marks the last
event, burns as much again for the "teardown", and reports its own CPU clock at
both ends, which is what the bench reads. Margin: 15 % of the bench's figure or
two sampling intervals of one core, whichever is larger (the storm's end falls
between two samples and is interpolated).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from vifwire.profile.report import STORM_INCLUDES, render
from vifwire.profile.sampler_process import SamplerProcess

INTERVAL = 0.05
CHILD = """
import sys, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
sys.stdin.readline()
print(time.time(), time.process_time(), flush=True)   # the storm starts
burn(0.4)
print(time.time(), time.process_time(), flush=True)   # the last network-vif-plugged
burn(0.4)                                             # teardown
print("done", flush=True)
sys.stdin.readline()
"""


def test_a_storms_report_and_the_bench_count_the_same_cpu(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        sampler = SamplerProcess({"stack": [child.pid]}, tmp_path / "resources.json",
                                 interval=INTERVAL).start()
        child.stdin.write("go\n")
        child.stdin.flush()
        t_start, cpu_start = map(float, child.stdout.readline().split())
        t_last, cpu_last = map(float, child.stdout.readline().split())
        assert child.stdout.readline().strip() == "done"
        sampler.stop()
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
    bench_s = cpu_last - cpu_start  # what bench/storm.py reads at the last event
    events = [{"t": t_start, "stage": "created", "port": "p-1", "component": "compute"},
              {"t": t_last, "stage": "event_received", "port": "p-1", "component": "compute"}]
    (tmp_path / "compute-1.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    (tmp_path / "storm.json").write_bytes(orjson.dumps({"count": 1}))
    profile = orjson.loads(render(tmp_path)[0].read_bytes())
    cpu = profile["cpu"]

    assert cpu["includes"] == STORM_INCLUDES
    assert cpu["window"][1] == t_last
    margin = max(0.15 * bench_s, 2 * INTERVAL)
    assert abs(cpu["seconds"]["stack"] - bench_s) <= margin, (cpu["seconds"], bench_s)
    # The whole window has the teardown too, and says so.
    assert cpu["whole"]["seconds"]["stack"] >= cpu["seconds"]["stack"] + 0.4 - margin
    assert "teardown" in cpu["whole"]["includes"]
    assert 0.0 <= cpu["profiler"]["sampler_cpu_s"] < cpu["whole"]["seconds"]["stack"]
