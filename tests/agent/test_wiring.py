"""The agent against a real private Open vSwitch, real namespaces and a real bus."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest

from vifwire.agent.errors import AgentError
from vifwire.agent.model import DEAD_VLAN
from vifwire.agent.service import OvsAgent
from vifwire.bus.base import agent_topic
from vifwire.bus.local import LocalBus
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import OvsSettings, Settings
from vifwire.trace import WIRING_STEPS, NullTracer, Stage

from .conftest import log_latency
from .peers import ServerPeer, Vm, port, wait_for

pytestmark = pytest.mark.ovs

MakeVm = Callable[..., Vm]


def pid() -> str:
    return str(uuid.uuid4())


async def tag_of(vm: Vm) -> int | None:
    return await asyncio.to_thread(vm.tag_in_ovsdb)


async def wait_tag(vm: Vm, expected: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (tag := await tag_of(vm)) != expected:
        assert time.monotonic() < deadline, f"{vm.device}: tag {tag}, expected {expected}"
        await asyncio.sleep(0.02)


async def test_bound_port_is_tagged_and_reported_up(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
        vms: MakeVm) -> None:
    net = pid()
    p = port(pid(), net, settings.host, mac="fa:16:3e:00:00:11")
    server.ports[p["port_id"]] = p
    agent = make_agent()
    await agent.start()
    vm = vms(p["port_id"], "10.0.0.11", p["mac_address"])
    await wait_for(lambda: p["port_id"] in server.reported_up(), what="ports_up")
    vlan = agent.local_vlans()[net]
    assert 1 <= vlan <= 4094
    assert await tag_of(vm) == vlan
    config = await asyncio.to_thread(vm.other_config)
    assert f'net_uuid="{net}"' in config and f'tag="{vlan}"' in config
    assert 'network_type=vxlan' in config and 'segmentation_id="100"' in config
    assert server.ports[p["port_id"]]["status"] == "ACTIVE"
    stages = [e["stage"] for e in agent.tracer.events if e["port"] == p["port_id"]]
    assert stages == [Stage.SEEN, Stage.WIRED, Stage.UP]
    # WIRED carries when the wiring passed each wait, in order, after SEEN.
    marks = {e["stage"]: e for e in agent.tracer.events if e["port"] == p["port_id"]}
    steps = marks[Stage.WIRED]["steps"]
    times = [marks[Stage.SEEN]["t"], *(steps[s] for s in WIRING_STEPS), marks[Stage.WIRED]["t"]]
    assert list(steps) == list(WIRING_STEPS) and times == sorted(times)
    log_latency(agent, [vm])


async def test_same_network_pings_other_network_does_not(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
        vms: MakeVm) -> None:
    red, blue = pid(), pid()
    a = port(pid(), red, settings.host, mac="fa:16:3e:00:01:01", ip="10.0.0.1")
    b = port(pid(), red, settings.host, mac="fa:16:3e:00:01:02", ip="10.0.0.2")
    c = port(pid(), blue, settings.host, mac="fa:16:3e:00:01:03", ip="10.0.0.3")
    for p in (a, b, c):
        server.ports[p["port_id"]] = p
    agent = make_agent()
    await agent.start()
    va, vb, vc = (vms(p["port_id"], p["fixed_ips"][0]["ip_address"], p["mac_address"])
                  for p in (a, b, c))
    await wait_for(lambda: server.reported_up() >= {a["port_id"], b["port_id"], c["port_id"]},
                   what="three ports up")
    ta, tb, tc = await tag_of(va), await tag_of(vb), await tag_of(vc)
    assert ta == tb != tc
    assert DEAD_VLAN not in (ta, tc)
    assert await asyncio.to_thread(va.ping, "10.0.0.2")
    assert not await asyncio.to_thread(va.ping, "10.0.0.3")
    log_latency(agent, [va, vb, vc])


async def test_vif_before_bind_is_dead_then_wired(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
        bus: LocalBus, vms: MakeVm) -> None:
    agent = make_agent()
    await agent.start()
    p = port(pid(), pid(), settings.host, mac="fa:16:3e:00:02:01")
    vm = vms(p["port_id"], "10.0.0.21", p["mac_address"])
    await wait_tag(vm, DEAD_VLAN)
    assert p["port_id"] in server.detail_lookups
    assert p["port_id"] not in server.reported_up()

    server.ports[p["port_id"]] = p
    await bus.cast(agent_topic(settings.host), "port_bound", port=p)
    await wait_for(lambda: p["port_id"] in server.reported_up(), what="up after bind")
    assert await tag_of(vm) == agent.local_vlans()[p["network_id"]]

    # the port is deleted on the server: back to the dead VLAN, network keys gone
    await bus.cast(agent_topic(settings.host), "port_unbound", port_id=p["port_id"])
    await wait_tag(vm, DEAD_VLAN)
    assert "net_uuid" not in await asyncio.to_thread(vm.other_config)
    assert p["network_id"] not in agent.local_vlans()


async def test_admin_down_port_is_dead_and_reported_down(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
        vms: MakeVm) -> None:
    p = port(pid(), pid(), settings.host, mac="fa:16:3e:00:03:01", admin_state_up=False)
    server.ports[p["port_id"]] = p
    agent = make_agent()
    await agent.start()
    vm = vms(p["port_id"], "10.0.0.31", p["mac_address"])
    await wait_for(lambda: p["port_id"] in server.reported_down(), what="ports_down")
    assert await tag_of(vm) == DEAD_VLAN
    assert p["port_id"] not in server.reported_up()


async def test_unplug_reports_down_and_frees_the_vlan(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
        vms: MakeVm) -> None:
    p = port(pid(), pid(), settings.host, mac="fa:16:3e:00:04:01")
    server.ports[p["port_id"]] = p
    agent = make_agent()
    await agent.start()
    vm = vms(p["port_id"], "10.0.0.41", p["mac_address"])
    await wait_for(lambda: p["port_id"] in server.reported_up(), what="ports_up")
    assert p["network_id"] in agent.local_vlans()
    await asyncio.to_thread(vm.unplug)
    await wait_for(lambda: p["port_id"] in server.reported_down(), what="ports_down")
    assert server.ports[p["port_id"]]["status"] == "DOWN"
    assert p["network_id"] not in agent.local_vlans()


async def test_restart_rereports_keeps_tags_and_cleans_up(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, settings: Settings,
        vms: MakeVm) -> None:
    red, blue = pid(), pid()
    a = port(pid(), red, settings.host, mac="fa:16:3e:00:05:01", ip="10.0.0.51")
    b = port(pid(), blue, settings.host, mac="fa:16:3e:00:05:02", ip="10.0.0.52")
    gone = port(pid(), blue, settings.host, mac="fa:16:3e:00:05:03", ip="10.0.0.53")
    for p in (a, b, gone):
        server.ports[p["port_id"]] = p
    first = make_agent()
    await first.start()
    va, vb, vgone = (vms(p["port_id"], p["fixed_ips"][0]["ip_address"], p["mac_address"])
                     for p in (a, b, gone))
    await wait_for(lambda: server.reported_up() >= {a["port_id"], b["port_id"], gone["port_id"]},
                   what="ports up")
    tags = {vm.device: await tag_of(vm) for vm in (va, vb)}
    await first.stop()

    # while the agent is down: one port is deleted on the server (its VIF stays,
    # stale), another VM is unplugged (its port stays ACTIVE on the server)
    del server.ports[gone["port_id"]]
    await asyncio.to_thread(vb.unplug)
    server.up_calls.clear()

    second = make_agent()
    await second.start()
    await wait_for(lambda: a["port_id"] in server.reported_up(), what="re-reported up")
    await wait_for(lambda: b["port_id"] in server.reported_down(), what="unplugged -> down")
    await wait_tag(vgone, DEAD_VLAN)
    assert await tag_of(va) == tags[va.device]
    assert second.local_vlans()[red] == tags[va.device]
    assert blue not in second.local_vlans()
    assert b["port_id"] not in server.reported_up()


async def test_heartbeats(make_agent: Callable[..., OvsAgent], server: ServerPeer,
                          settings: Settings, ovs: OvsRuntime) -> None:
    agent = make_agent()
    await agent.start()
    await wait_for(lambda: len(server.states) >= 3, what="three heartbeats")
    first, later = server.states[0], server.states[1:]
    assert first["start_flag"] is True and not any(s["start_flag"] for s in later)
    assert first["host"] == settings.host
    assert first["agent_type"] == "Open vSwitch agent"
    assert first["binary"] == "neutron-openvswitch-agent"
    config = first["configurations"]
    assert config["integration_bridge"] == ovs.settings.integration_bridge
    assert config["datapath_type"] == "netdev" and config["tunnel_types"] == ["vxlan"]


async def test_agent_survives_unreachable_server_and_retries(
        make_agent: Callable[..., OvsAgent], settings: Settings, bus: LocalBus,
        vms: MakeVm) -> None:
    agent = make_agent()
    await agent.start()  # nobody serves "server": heartbeats and sync fail, start succeeds
    p = port(pid(), pid(), settings.host, mac="fa:16:3e:00:06:01")
    vms(p["port_id"], "10.0.0.61", p["mac_address"])
    await asyncio.sleep(0.3)
    server = ServerPeer(ports={p["port_id"]: p}, fail_next_up=2)
    await bus.serve("server", server)
    await wait_for(lambda: p["port_id"] in server.reported_up(), timeout=15,
                   what="up after the server came back")
    assert server.states and server.states[0]["start_flag"] is True


async def test_unreachable_ovs_is_a_clear_error(tmp_path: object, bus: LocalBus) -> None:
    settings = Settings(run_dir=tmp_path, host="vwa-nowhere")  # type: ignore[arg-type]
    ovs = OvsSettings(run_dir=settings.run_dir / "ovs", integration_bridge="br-tnone")
    agent = OvsAgent(settings, bus, NullTracer(), ovs=ovs, ovs_timeout=2)
    started = time.monotonic()
    with pytest.raises(AgentError, match="unreachable"):
        await agent.start()
    assert time.monotonic() - started < 5


async def test_dead_vlan_ports_are_isolated(
        make_agent: Callable[..., OvsAgent], server: ServerPeer, vms: MakeVm) -> None:
    agent = make_agent()
    await agent.start()
    v1 = vms(pid(), "10.0.0.71", "fa:16:3e:00:07:01")
    v2 = vms(pid(), "10.0.0.72", "fa:16:3e:00:07:02")
    await wait_tag(v1, DEAD_VLAN)
    await wait_tag(v2, DEAD_VLAN)
    # Until its drop flow is in, a fresh dead-VLAN VIF may still reach another:
    # NORMAL switches VLAN 4095 too (see the agent's BASE_FLOWS).
    await wait_for(lambda: v1.dropped() and v2.dropped(), what="drop flows")
    assert not await asyncio.to_thread(v1.ping, "10.0.0.72")
