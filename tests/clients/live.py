"""A real vifwire server on a free 127.0.0.1 port, in a background thread with its own loop.

The clients under test speak real HTTP, so the app runs under uvicorn rather than
through an ASGI transport. The thread owns the loop; `register_agent` hops onto
it to report an agent's state through the LocalBus endpoint, as an agent would.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from vifwire.api.http_protocol import server_config
from vifwire.app import create_app
from vifwire.bus.base import SERVER_TOPIC
from vifwire.bus.local import LocalBus
from vifwire.settings import Settings
from vifwire.trace import NullTracer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    bus: LocalBus
    loop: asyncio.AbstractEventLoop
    settings: Settings

    def rpc(self, method: str, **kwargs: Any) -> Any:
        call = self.bus.call(SERVER_TOPIC, method, **kwargs)
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(timeout=10)

    def register_agent(self, host: str) -> None:
        self.rpc("report_state", agent={
            "host": host, "agent_type": "Open vSwitch agent",
            "binary": "neutron-openvswitch-agent", "topic": "N/A",
            "configurations": {"bridge_mappings": {}, "tunnel_types": ["vxlan"]},
            "start_flag": True})


@contextmanager
def live_server(tmp_path: Path, database_url: str | None = None) -> Iterator[LiveServer]:
    port = free_port()
    settings = Settings(run_dir=tmp_path, api_port=port, host="server-1",
                        database_url=database_url or f"sqlite:///{tmp_path / 'api.sqlite'}",
                        nova_url="http://127.0.0.1:9/v2.1")
    bus = LocalBus()
    app = create_app(settings, bus, NullTracer())
    server = uvicorn.Server(server_config(app, "127.0.0.1", port))
    loops: list[asyncio.AbstractEventLoop] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=run, name="vifwire-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("vifwire server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", bus, loops[0], settings)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
