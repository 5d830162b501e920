"""A server worker for the tests, as its own process: serves the `server` topic.

usage: python worker.py AMQP_URL PREFIX MARKER_DIR

`handle(key)` holds the first delivery of each key for a minute (the test kills
the worker then) and answers later deliveries at once, with this process's pid.
"""

import asyncio
import os
import sys
from pathlib import Path

from vifwire.bus.amqp import AmqpBus


class Worker:
    def __init__(self, markers: Path) -> None:
        self._markers = markers

    async def handle(self, key: str) -> int:
        marker = self._markers / key
        first = not marker.exists()
        marker.touch()
        print(f"busy {key}", flush=True)
        if first:
            await asyncio.sleep(60)
        return os.getpid()


async def main(url: str, prefix: str, markers: str) -> None:
    bus = AmqpBus(url, prefix=prefix)
    await bus.start()
    await bus.serve("server", Worker(Path(markers)))
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
