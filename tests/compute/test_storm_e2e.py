"""The whole path: real server (uvicorn), real agent, private OVS, a storm of 4 VMs."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from vifwire.compute.errors import ComputeError
from vifwire.compute.neutron import NeutronClient, Retry
from vifwire.compute.state import RunState
from vifwire.compute.storm import StormConfig, run_storm
from vifwire.compute.vm import list_namespaces
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import Settings
from vifwire.trace import Tracer

app_module = pytest.importorskip("vifwire.app")
agent_module = pytest.importorskip("vifwire.agent.service")
from vifwire.bus.local import LocalBus  # noqa: E402

from .tcp_proxy import FlakyProxy  # noqa: E402

pytestmark = pytest.mark.ovs


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@pytest.fixture
async def stack(ovs: OvsRuntime, tmp_path: Path, short_id: str) -> AsyncIterator[Settings]:
    settings = Settings(run_dir=tmp_path, host=f"vwc-host-{short_id}", api_port=_free_port(),
                        nova_url=f"http://127.0.0.1:{_free_port()}/v2.1",
                        agent_heartbeat_s=0.5)
    bus = LocalBus()
    await bus.start()
    app = app_module.create_app(settings, bus, Tracer("server", None))
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=settings.api_port,
                                    log_level="warning", lifespan="on"))
    serve = asyncio.create_task(server.serve(), name="test:neutron-api")
    agent: Any = None
    try:
        while not server.started:
            assert not serve.done(), "the API server did not start"
            await asyncio.sleep(0.02)
        agent = agent_module.OvsAgent(settings, bus, Tracer("agent", None), ovs=ovs.settings)
        await agent.start()
        yield settings
    finally:
        if agent is not None:
            await agent.stop()
        server.should_exit = True
        await serve
        await bus.stop()


async def test_storm_of_four(stack: Settings, ovs: OvsRuntime, short_id: str,
                             host_netns: str) -> None:
    prefix = f"vwe{short_id}-"
    count = int(os.environ.get("VIFWIRE_STORM_COUNT", "4"))
    progress: list[tuple[str, int, int]] = []
    config = StormConfig(
        neutron_url=stack.api_url, network="demo", count=count, host=stack.host, ovs=ovs.settings,
        run_dir=stack.run_dir, nova_url=stack.nova_url, timeout=60, ensure_network=True,
        ns_prefix=prefix, host_netns=host_netns, progress=lambda *p: progress.append(p))
    # A crashed earlier run left a Neutron port behind: this storm removes it first.
    async with NeutronClient(stack.api_url) as neutron:
        net = await neutron.create_network(f"crashed-{short_id}")
        await neutron.create_subnet(net["id"], "10.9.0.0/24")
        orphan = await neutron.create_port(net["id"])
    RunState.new(stack.run_dir, "crashed", pid=_dead_pid(), ports=[orphan["id"]],
                 networks=[net["id"]])
    result = await run_storm(config)
    summary = result.to_dict()
    if os.environ.get("VIFWIRE_SHOW_STORM"):
        print({k: v for k, v in summary.items() if k != "records"})
    assert summary["vms"] == count
    assert summary["plugged"] == count, summary["failures"]
    assert summary["connectivity_ok"], summary["connectivity"]
    assert 0 < summary["latency_ms"]["min"] <= summary["latency_ms"]["max"]
    assert ("events", count, count) in progress
    assert summary["cleaned_leftovers"]["ports"] == [orphan["id"]]
    assert summary["cleaned_leftovers"]["networks"] == [net["id"]]
    # Torn down: no namespaces, no OVS ports, no state file, no ports in Neutron.
    assert list_namespaces(prefix) == []
    assert ovs.vsctl("list-ports", ovs.settings.integration_bridge).split() == []
    assert not list((stack.run_dir / "compute").glob("*.json"))
    async with NeutronClient(stack.api_url) as neutron:
        assert await neutron.list_ports(network_id=result.network_id) == []
        assert await neutron.find_network(f"crashed-{short_id}") is None


async def test_missing_network_is_a_clear_error(stack: Settings, ovs: OvsRuntime) -> None:
    config = StormConfig(neutron_url=stack.api_url, network="nope", count=1, host=stack.host,
                         ovs=ovs.settings, run_dir=stack.run_dir, nova_url=stack.nova_url)
    with pytest.raises(ComputeError, match="network 'nope' not found"):
        await run_storm(config)


async def test_storm_rides_out_a_neutron_outage(stack: Settings, ovs: OvsRuntime, short_id: str,
                                                host_netns: str) -> None:
    """Neutron refuses connections for 2 s mid-storm, and the answers of three port
    creates are lost after the server made the ports: every VM still ends wired
    with exactly one port (none leaks: after teardown the network has none)."""
    count = int(os.environ.get("VIFWIRE_STORM_COUNT", "12"))
    proxy = FlakyProxy(stack.api_port)
    await proxy.start()
    proxy.lose_answers = 3
    outages: list[asyncio.Task[None]] = []

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage == "ports" and done == total // 3 and not outages:
            outages.append(asyncio.get_running_loop().create_task(proxy.outage(2.0)))

    config = StormConfig(
        neutron_url=proxy.url, network="demo", count=count, host=stack.host, ovs=ovs.settings,
        run_dir=stack.run_dir, nova_url=stack.nova_url, timeout=60, ensure_network=True,
        ns_prefix=f"vwo{short_id}-", host_netns=host_netns, progress=on_progress)
    try:
        result = await run_storm(config)
        if outages:
            await outages[0]
    finally:
        await proxy.stop()
    summary = result.to_dict()
    assert proxy.lost == 3 and outages, "the faults were not injected"
    assert summary["neutron_retries"] > 0
    assert summary["plugged"] == count, summary["failures"]
    assert summary["connectivity_ok"], summary["connectivity"]
    assert summary["teardown_errors"] == []
    async with NeutronClient(stack.api_url) as neutron:
        assert await neutron.list_ports(network_id=result.network_id) == []


async def test_a_create_whose_answer_was_lost_is_adopted(stack: Settings) -> None:
    """The server made the network, the subnet and the port, but each answer was lost:
    the retries find them again (by name, by network and CIDR, by device_id)."""
    proxy = FlakyProxy(stack.api_port, lose_prefix=b"POST /v2.0/")
    await proxy.start()
    try:
        async with NeutronClient(stack.api_url) as direct, \
                NeutronClient(proxy.url, retry=Retry(budget_s=5)) as neutron:
            proxy.lose_answers = 3
            net = await neutron.create_network("lost-answer")
            subnet = await neutron.create_subnet(net["id"], "10.7.0.0/24")
            port = await neutron.create_port(net["id"], device_id="vm-lost-answer")
            assert proxy.lost == 3 and neutron.retries == 3
            assert [n["id"] for n in await direct.list_ports(network_id=net["id"])] == \
                [port["id"]]
            assert [s["id"] for s in await direct.list_subnets(net["id"])] == [subnet["id"]]
            networks = (await direct._call("GET", "/networks",
                                           params={"name": "lost-answer"}))["networks"]
            assert [n["id"] for n in networks] == [net["id"]]
            assert port["device_id"] == "vm-lost-answer"
            await direct.delete_port(port["id"])
            await direct.delete_network(net["id"])
    finally:
        await proxy.stop()


async def test_storm_with_port_security(stack: Settings, ovs: OvsRuntime, short_id: str,
                                        host_netns: str) -> None:
    """`boot --port-security`: members in the default group ping each other; an
    outsider in its own group is refused both ways once the agent enforces groups
    (until then the summary must say it was not refused)."""
    prefix = f"vwfw{short_id}-"
    config = StormConfig(
        neutron_url=stack.api_url, network="secured", count=3, host=stack.host,
        ovs=ovs.settings, run_dir=stack.run_dir, nova_url=stack.nova_url, timeout=60,
        ensure_network=True, ns_prefix=prefix, host_netns=host_netns, port_security=True)
    async with NeutronClient(stack.api_url) as neutron:  # a crashed run's outsider group
        left = await neutron.create_security_group(f"crashed-{short_id}")
    RunState.new(stack.run_dir, "crashed-sg", pid=_dead_pid(), security_groups=[left["id"]])
    summary = (await run_storm(config)).to_dict()
    assert summary["cleaned_leftovers"]["security_groups"] == [left["id"]]
    assert summary["plugged"] == 3, summary["failures"]
    secured = summary["port_security"]
    assert secured["members_ok"] is True, summary["connectivity"]
    assert secured["outsider_ip"] is not None, summary["connectivity"]
    enforced = importlib.util.find_spec("vifwire.agent.firewall") is not None  # issue 10's agent
    assert secured["outsider_refused"] is enforced, secured
    assert summary["connectivity_ok"] is enforced
    assert list_namespaces(prefix) == []
    async with NeutronClient(stack.api_url) as neutron:
        network = await neutron.find_network("secured")
        assert network is not None and network["port_security_enabled"] is True
        groups = (await neutron._call("GET", "/security-groups"))["security_groups"]
        assert [g["name"] for g in groups] == ["default"]  # the outsider's group went
    # A network without port security is refused by a port-security storm.
    async with NeutronClient(stack.api_url) as neutron:
        await neutron.create_network(f"open-{short_id}", port_security_enabled=False)
    with pytest.raises(ComputeError, match="has port security off"):
        await run_storm(StormConfig(
            neutron_url=stack.api_url, network=f"open-{short_id}", count=1, host=stack.host,
            ovs=ovs.settings, run_dir=stack.run_dir, nova_url=stack.nova_url,
            ns_prefix=prefix, host_netns=host_netns, port_security=True))


async def test_builds_limited_per_host(stack: Settings, ovs: OvsRuntime, short_id: str,
                                       host_netns: str) -> None:
    """With max_concurrent_builds=2, no more than two of six VMs are ever in build
    (create .. vif-plugged) at once, and all six still end wired."""
    config = StormConfig(
        neutron_url=stack.api_url, network="demo", count=6, host=stack.host, ovs=ovs.settings,
        run_dir=stack.run_dir, nova_url=stack.nova_url, timeout=60, ensure_network=True,
        ns_prefix=f"vwb{short_id}-", host_netns=host_netns, check_connectivity=False,
        max_concurrent_builds=2)
    summary = (await run_storm(config)).to_dict()
    assert summary["plugged"] == 6, summary["failures"]
    spans = [(r["t_start"], r["t_event"]) for r in summary["records"] if not r.get("probe")]
    starts = sorted(start for start, _ in spans)
    in_build = [sum(1 for s, e in spans if s <= t < e) for t in starts]
    assert max(in_build) == 2, in_build
