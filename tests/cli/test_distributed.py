"""Distributed mode as an operator runs it: `vifwire server --workers 2` on
PostgreSQL and RabbitMQ, and `vifwire agent` as its own process with a private
Open vSwitch in a network namespace; a VIF plugged there goes ACTIVE through
the bus, and a worker killed with SIGKILL is restarted while the other serves.

The test gets a vhost of its own on the shared broker (deleted after it) and
every name (namespace, devices, queue prefix) a random id, so runs of other
helpers never meet ours.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import OvsSettings

from .conftest import Process, answers, free_port, run_cli

BROKER = "amqp://guest:guest@127.0.0.1:5672"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent needs root")


class _Nova(BaseHTTPRequestHandler):
    """Nova's os-server-external-events: takes every event (the test reads the posts)."""

    posts: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Nova.posts.extend(body["events"])
        answer = json.dumps({"events": [{**e, "code": 200} for e in body["events"]]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def nova_url() -> Iterator[str]:
    _Nova.posts.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Nova)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2.1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, nova_url: str,
            processes: list[Process]) -> Iterator[dict[str, str]]:
    rid = uuid.uuid4().hex[:8]
    vhost = f"vwcli-{rid}"  # ours alone; deleting it deletes every queue we made
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    common = {"VIFWIRE_BUS_URL": f"{BROKER}/{vhost}", "VIFWIRE_BUS_PREFIX": f"vwt{rid}",
              "VIFWIRE_DATABASE_URL": pg_url, "VIFWIRE_API_PORT": str(free_port()),
              "VIFWIRE_NOVA_URL": nova_url}
    names = {"host": f"host-{rid}", "netns": f"vwag-{rid}", "url":
             f"http://127.0.0.1:{common['VIFWIRE_API_PORT']}", **common}
    agent_dir = tmp_path / "agent"
    assert run_cli("db", "upgrade", run_dir=tmp_path / "server", **common).returncode == 0
    try:
        yield names
    finally:
        for process in processes:
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait()
        run_cli("--ovs-netns", names["netns"], "down", run_dir=agent_dir, **common)
        subprocess.run(["ip", "netns", "del", names["netns"]], capture_output=True, check=False)
        _rabbitmqctl("delete_vhost", vhost)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def test_workers_and_an_agent_process_over_rabbitmq(tmp_path: Path, cluster: dict[str, str],
                                                    processes: list[Process]) -> None:
    env = {k: v for k, v in cluster.items() if k.startswith("VIFWIRE_")}
    url, host = cluster["url"], cluster["host"]
    server = Process(["server", "--workers", "2"], tmp_path / "server", tmp_path / "server.log",
                     **env)
    processes.append(server)
    server.wait_for("the API", lambda: answers(f"{url}/v2.0/networks"))
    server.wait_for("two workers", lambda: len(server.children()) == 2)

    metrics_port = free_port()
    agent = Process(["--host", host, "--ovs-netns", cluster["netns"], "agent",
                     "--metrics-port", str(metrics_port)], tmp_path / "agent",
                    tmp_path / "agent.log", **env)
    processes.append(agent)
    status: list[str] = []

    def listed_alive() -> bool:
        done = run_cli("status", run_dir=tmp_path / "server", **env)
        status[:] = done.stdout.splitlines()
        heartbeat = f"  {host}: alive, last heartbeat 20"
        return (done.returncode == 0 and f"api:   answering at {url}" in status
                and any(line.startswith(heartbeat) for line in status))

    agent.wait_for("the agent's heartbeat in `vifwire status`", listed_alive)

    # A port bound to the agent's host by whichever worker; its VIF goes ACTIVE.
    client = httpx.Client(base_url=url, timeout=10)
    net = client.post("/v2.0/networks", json={"network": {"name": "d1"}}).json()["network"]
    client.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4,
                                                   "cidr": "10.77.0.0/24"}}).raise_for_status()
    port = client.post("/v2.0/ports", json={"port": {
        "network_id": net["id"], "binding:host_id": host, "device_owner": "compute:nova",
        "device_id": str(uuid.uuid4())}}).json()["port"]
    _plug(tmp_path / "agent", cluster["netns"], port["id"], port["mac_address"])
    agent.wait_for("the port ACTIVE", lambda: client.get(
        f"/v2.0/ports/{port['id']}").json()["port"]["status"] == "ACTIVE")
    agent.wait_for("network-vif-plugged", lambda: [e["tag"] for e in _Nova.posts] == [
        port["id"]])
    assert _Nova.posts[0]["name"] == "network-vif-plugged"
    wired = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert "vifwire_agent_ports_wired_total 1.0" in wired
    assert "vifwire_agent_plug_to_wired_seconds_count 1.0" in wired

    # SIGKILL one worker: the other serves every new connection meanwhile (a kept-alive
    # one the dead worker held is reset, as with any server); the dead one comes back.
    killed, survivor = server.children()
    client.close()
    os.kill(killed, signal.SIGKILL)
    for _ in range(20):
        assert httpx.get(f"{url}/v2.0/ports/{port['id']}", timeout=10).status_code == 200
    client = httpx.Client(base_url=url, timeout=10)
    line = "died with signal SIGKILL; restarted as pid "
    server.wait_for("the restart", lambda: f"(pid {killed}) {line}" in server.output())
    server.wait_for("two workers again", lambda: len(server.children()) == 2)
    assert survivor in server.children() and killed not in server.children()
    scraped = client.get("/metrics").text
    client.close()
    assert 'route="/v2.0/ports/{id}"' in scraped
    # Either worker answers for both: the one that sent the event may be the killed one,
    # whose counts stay (prometheus-client keeps a dead process's counters and histograms).
    assert "vifwire_active_to_event_sent_seconds_count 1.0" in scraped

    assert agent.stop() == 0, agent.output()
    assert "Traceback" not in agent.output()
    assert server.stop() == 0, server.output()


def _plug(agent_dir: Path, netns: str, port_id: str, mac: str) -> None:
    """What os-vif does: a veth whose host end joins br-int with the port's iface-id."""
    device = f"vwt{uuid.uuid4().hex[:8]}"
    inside = ["ip", "netns", "exec", netns]
    subprocess.run([*inside, "ip", "link", "add", device, "type", "veth", "peer", "name",
                    f"{device}p"], check=True, capture_output=True)
    subprocess.run([*inside, "ip", "link", "set", device, "up"], check=True)
    OvsRuntime(OvsSettings(run_dir=agent_dir / "ovs"), netns=netns).vsctl(
        "--", "add-port", "br-int", device, "--", "set", "Interface", device,
        f"external_ids:iface-id={port_id}", f"external_ids:attached-mac={mac}",
        "external_ids:iface-status=active")


@pytest.mark.parametrize(("bus", "expected"), [
    ("local", "error: vifwire agent needs a shared bus to reach the server (give --bus-url "
              "amqp://...)"),
    ("amqp://guest:secret@127.0.0.1:1/", "error: cannot connect to RabbitMQ at "
                                         "amqp://guest:***@127.0.0.1:1/"),
])
def test_an_agent_without_a_usable_bus_is_one_line(tmp_path: Path, bus: str,
                                                   expected: str) -> None:
    done = run_cli("--bus-url", bus, "--host", "nowhere", "agent", run_dir=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), done.stderr
    assert not (tmp_path / "ovs").exists()  # nothing started
