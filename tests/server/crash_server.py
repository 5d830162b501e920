"""A server process for the crash test: it boots ports until COUNT are ACTIVE.

    python crash_server.py <database_url> <nova_url> <run_dir> <count>

Each start picks up where the last (killed) one stopped: ports already created
are found again by device_id, those not yet ACTIVE are reported up, and the
rest are created and reported up one at a time, as a storm's agent does, so
the notifier posts while the parent SIGKILLs this process at random moments.
Prints "ready" once serving and "done" once every port is ACTIVE and the
notifier has nothing left to post.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from vifwire.bus.base import SERVER_TOPIC, agent_topic
from vifwire.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
from helpers import HOST, FakeAgent, running


async def main(database_url: str, nova_url: str, run_dir: str, count: int) -> None:
    settings = Settings(run_dir=Path(run_dir), host="server-1", database_url=database_url,
                        nova_url=nova_url)
    async with running(settings) as stack:
        await stack.bus.serve(agent_topic(HOST), FakeAgent())
        await stack.register_agent()
        client = stack.client
        nets = (await client.get("/v2.0/networks", params={"name": "crash"})).json()["networks"]
        if nets:
            net = nets[0]
        else:
            net = (await client.post("/v2.0/networks", json={"network": {
                "name": "crash"}})).json()["network"]
            await client.post("/v2.0/subnets", json={"subnet": {
                "network_id": net["id"], "ip_version": 4, "cidr": "10.9.0.0/22"}})
        print("ready", flush=True)
        ports = {p["device_id"]: p for p in (await client.get(
            "/v2.0/ports", params={"network_id": net["id"]})).json()["ports"]}
        for i in range(count):
            port = ports.get(f"vm-{i}")
            if port is None:
                port = (await client.post("/v2.0/ports", json={"port": {
                    "network_id": net["id"], "device_id": f"vm-{i}",
                    "device_owner": "compute:nova", "binding:host_id": HOST}})).json()["port"]
            if port["status"] != "ACTIVE":
                await stack.bus.call(SERVER_TOPIC, "ports_up", host=HOST, port_ids=[port["id"]])
        await stack.app.state.services.notifier.wait_idle()
        print("done", flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
