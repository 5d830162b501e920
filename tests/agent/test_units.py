"""Pure parts of the agent (plan, local VLANs) and the reporter on a real LocalBus."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from vifwire.agent.errors import VlansExhausted
from vifwire.agent.model import DEAD_VLAN, Vif
from vifwire.agent.plan import Lookup, PortView, plan
from vifwire.agent.reporter import StatusReporter
from vifwire.agent.vlans import LocalVlans
from vifwire.bus.base import SERVER_TOPIC
from vifwire.bus.local import LocalBus
from vifwire.trace import Stage, Tracer

from .peers import ServerPeer, port, wait_for

VIF = Vif(port_id="p1", name="tap1")


def view(**kw: object) -> PortView:
    base = dict(port_id="p1", vif=VIF, details=port("p1", "n1", "h"), lookup=Lookup.KNOWN,
                local_vlan=7, was_up=False)
    base.update(kw)
    return PortView(**base)  # type: ignore[arg-type]


def test_plan_wires_a_known_port_and_reports_up() -> None:
    action = plan(view())
    assert action.write is not None and action.write.tag == 7
    assert action.write.other_config["net_uuid"] == "n1"
    assert action.report == "up" and action.wired


def test_plan_is_idle_apart_from_reporting_when_already_wired() -> None:
    config = plan(view()).write.other_config  # type: ignore[union-attr]
    action = plan(view(vif=Vif("p1", "tap1", tag=7, other_config=config)))
    assert action.write is None and action.report == "up"


def test_plan_fetches_unknown_and_kills_absent() -> None:
    assert plan(view(lookup=Lookup.UNKNOWN, details=None)).fetch
    dead = plan(view(lookup=Lookup.ABSENT, details=None,
                     vif=Vif("p1", "tap1", tag=7, other_config={"net_uuid": "n1"})))
    assert dead.write is not None and dead.write.tag == DEAD_VLAN
    assert dead.write.clear_keys == ("net_uuid",) and dead.report is None


def test_plan_admin_down_and_vanished_vif() -> None:
    down = plan(view(details=port("p1", "n1", "h", admin_state_up=False)))
    assert down.write is not None and down.write.tag == DEAD_VLAN and down.report == "down"
    assert plan(view(vif=None, was_up=True)).report == "down"
    assert plan(view(vif=None, was_up=False)).idle


def test_vlans_are_shared_per_network_freed_and_recovered() -> None:
    vlans = LocalVlans(first=1, last=3)
    vlans.hint([("old", 1)])
    assert vlans.acquire("a", "p1") == 2  # 1 is kept for "old"
    assert vlans.acquire("a", "p2") == 2
    assert vlans.acquire("old", "p3") == 1
    assert vlans.release("a", "p1") is None
    assert vlans.release("a", "p2") == 2
    assert vlans.acquire("b", "p4") == 2
    assert vlans.acquire("c", "p5") == 3
    with pytest.raises(VlansExhausted):
        vlans.acquire("d", "p6")


async def test_reporter_batches_retries_and_keeps_latest_wish() -> None:
    bus = LocalBus()
    server = ServerPeer(ports={p: port(p, "n", "h") for p in ("a", "b", "c")}, fail_next_up=1)
    await bus.serve(SERVER_TOPIC, server)
    tracer = Tracer("agent", None)
    reporter = StatusReporter(bus, "h", tracer, backoff=(0.01, 0.05))
    reporter.start()
    try:
        reporter.want("a", "up")
        reporter.want("b", "up")
        reporter.want("c", "up")
        reporter.want("c", "down")  # latest wins before anything was sent
        await wait_for(lambda: server.reported_up() == {"a", "b"}, what="a and b up")
        await wait_for(lambda: "c" in server.reported_down(), what="c down")
        assert "c" not in server.reported_up()
        reporter.want("a", "up")  # already up: nothing more is sent
        await wait_for(lambda: reporter.pending == 0)
        assert sum(call.count("a") for call in server.up_calls) == 1
        assert {e["port"] for e in tracer.events if e["stage"] == Stage.UP} == {"a", "b"}
    finally:
        await reporter.stop()
        await bus.stop()


def test_planning_loads_no_ovs_library() -> None:
    """Only vifwire.ovs may import ovsdbapp/python-ovs; the planner is pure."""
    code = ("import sys, vifwire.agent.plan, vifwire.agent.model; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ovs', 'ovsdbapp')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_a_vif_without_its_device_is_reported_down_and_keeps_its_tag() -> None:
    p = port("p1", "n1", "h1", status="ACTIVE")
    lost = Vif("p1", "tap1", tag=7, other_config={"net_uuid": "n1"}, lost=True)
    action = plan(PortView("p1", lost, p, Lookup.KNOWN, 7, was_up=True))
    assert action.report == "down" and action.write is None


class SlowServer:
    """Answers status reports only when told to, recording what each call carried."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.release = asyncio.Event()

    async def ports_up(self, host: str, port_ids: list[str]) -> list[str]:
        self.calls.append(("up", list(port_ids)))
        await self.release.wait()
        return list(port_ids)

    async def ports_down(self, host: str, port_ids: list[str]) -> list[str]:
        self.calls.append(("down", list(port_ids)))
        await self.release.wait()
        return list(port_ids)


async def test_reporter_sends_beside_a_slow_call_but_never_a_port_twice_at_once() -> None:
    bus = LocalBus()
    server = SlowServer()
    await bus.serve(SERVER_TOPIC, server)
    reporter = StatusReporter(bus, "h", Tracer("agent", None), max_in_flight=2)
    reporter.start()
    try:
        reporter.want("a", "up")
        await wait_for(lambda: len(server.calls) == 1, what="a's call")
        reporter.want("b", "up")  # a second slot is free: b does not wait for a's answer
        await wait_for(lambda: len(server.calls) == 2, what="b's call beside a's")
        reporter.want("a", "down")  # a's up is unanswered: its down must wait for it
        reporter.want("c", "up")  # both slots busy: c waits too
        await asyncio.sleep(0.05)
        assert server.calls == [("up", ["a"]), ("up", ["b"])]
        server.release.set()
        await wait_for(lambda: reporter.pending == 0 and len(server.calls) == 4,
                       what="the held reports")
        assert sorted(server.calls[2:]) == [("down", ["a"]), ("up", ["c"])]
    finally:
        await reporter.stop()
        await bus.stop()
