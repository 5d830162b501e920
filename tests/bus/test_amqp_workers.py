"""Two server workers as real processes: one SIGKILLed mid-handler, the other answers."""

import asyncio
import os
import signal
import sys
from pathlib import Path

from vifwire.bus.amqp import AmqpBus

WORKER = Path(__file__).with_name("worker.py")


async def _start_worker(url: str, prefix: str, markers: Path) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), url, prefix, str(markers), stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line == b"ready\n"
    return process


async def test_a_worker_killed_mid_handler_leaves_the_call_to_the_other(
        amqp_url: str, prefix: str, tmp_path: Path) -> None:
    workers = [await _start_worker(amqp_url, prefix, tmp_path) for _ in range(2)]
    agent = AmqpBus(amqp_url, prefix=prefix)
    await agent.start()
    try:
        reply = asyncio.create_task(agent.call("server", "handle", key="k1", timeout=30))
        reads = {asyncio.create_task(w.stdout.readline()): w for w in workers}  # type: ignore[union-attr]
        done, _ = await asyncio.wait(reads, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        busy = reads[done.pop()]
        os.kill(busy.pid, signal.SIGKILL)  # while it holds the unacked request
        await busy.wait()
        other = next(w for w in workers if w is not busy)
        assert await reply == other.pid
        assert (tmp_path / "k1").exists()
        for task in reads:
            task.cancel()
    finally:
        await agent.stop()
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
