"""Issue 9.6 on real processes: a boot storm (compute.storm in process, its Nova
endpoint counting every event acted on, duplicates too; a repeat of a transition
already acted on is counted apart, not acted on) against `vifwire server --workers 2`
and `vifwire agent`, while the private RabbitMQ node or one server worker is
SIGKILLed mid-storm. Every port must end ACTIVE and every network-vif-plugged
arrive exactly once.

"Nothing more will arrive" is waited for, not slept on: the outbox table must be
empty (every event settled by Nova's answer), so no process holds an event it
could still post.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Callable

from vifwire.compute.nova_events import VIF_PLUGGED
from vifwire.compute.storm import Storm, StormConfig, run_storm

from .cluster import Cluster

VMS = 16
SETTLE_TIMEOUT_S = 90.0


async def wait_for(what: str, done: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(done):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def storm_with_fault(cluster: Cluster, fault: Callable[[], None]) -> dict[str, object]:
    """Boot VMS VMs; `fault` (blocking: it kills and waits for recovery) runs once
    half the ports are created. Returns what the checks need, taken before teardown."""
    s = cluster.settings
    created = asyncio.Event()
    seen: dict[str, object] = {}
    wired = [0]

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "ports" and done >= VMS // 2:
            created.set()
        elif stage == "events":
            wired[0] = done

    async def inject() -> None:
        await created.wait()
        seen["wired_at_fault"] = wired[0]
        await asyncio.to_thread(fault)

    async def after_boot(storm: Storm) -> None:
        await injector
        ports = [r.port_id for r in storm.result.vms if r.port_id]

        async def statuses() -> dict[str, str]:
            found = await storm.neutron.list_ports(network_id=storm.target.id,
                                                   fields=["id", "status"])
            return {p["id"]: p["status"] for p in found}

        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while any(v != "ACTIVE" for v in (await statuses()).values()):
            assert time.monotonic() < deadline, f"ports not ACTIVE: {await statuses()}"
            await asyncio.sleep(0.2)
        await wait_for("an empty outbox", lambda: cluster.outbox_rows() == 0, SETTLE_TIMEOUT_S)
        seen["ports"] = ports
        seen["statuses"] = await statuses()
        seen["plugged"] = {p: storm.book.counts[(VIF_PLUGGED, p)] for p in ports}

    config = StormConfig(
        neutron_url=s.api_url, network=f"storm-{cluster.id}", count=VMS, host=s.host,
        ovs=s.ovs, run_dir=s.run_dir, nova_url=s.nova_url, timeout=120,
        ensure_network=True, host_netns=s.ovs_netns, ns_prefix=f"vwd{cluster.id[:4]}-",
        check_connectivity=True, after_boot=after_boot, progress=progress)
    injector = asyncio.create_task(inject())
    result = await run_storm(config)
    seen["summary"] = result.to_dict()
    return seen


def check_every_port_once(seen: dict[str, object]) -> None:
    summary = seen["summary"]
    assert isinstance(summary, dict)
    assert summary["error"] is None, summary["error"]
    assert summary["plugged"] == VMS, summary["failures"]
    assert summary["connectivity"]["ring_ok"] == summary["connectivity"]["ring_pairs"]
    assert summary["connectivity"]["isolation_ok"]
    assert summary["teardown_errors"] == []
    wired_at_fault = seen["wired_at_fault"]
    assert isinstance(wired_at_fault, int) and wired_at_fault < VMS  # it was mid-storm
    ports = seen["ports"]
    assert isinstance(ports, list) and len(ports) == VMS
    assert seen["statuses"] == dict.fromkeys(ports, "ACTIVE")
    assert seen["plugged"] == dict.fromkeys(ports, 1)  # none lost, none twice


async def test_rabbitmq_killed_mid_storm(cluster: Cluster) -> None:
    """The private broker SIGKILLed and started again while ports are being bound:
    the workers and the agent reconnect and resync, and the storm completes."""
    server_pid, agent_pid = cluster.server and cluster.server.pid, cluster.agent_pid()

    def restart_broker() -> None:
        cluster.kill_broker()
        cluster.start_broker()

    seen = await storm_with_fault(cluster, restart_broker)
    check_every_port_once(seen)
    # Nobody was restarted to get there: the same processes reconnected.
    assert cluster.server is not None and cluster.server.pid == server_pid
    assert cluster.agent_pid() == agent_pid
    assert "restarted as pid" not in (cluster.logs / "server.log").read_text()


async def test_server_worker_killed_mid_storm(cluster: Cluster) -> None:
    """One of two workers SIGKILLed mid-storm: the other serves meanwhile, the
    supervisor restarts the dead one, and nothing it held is lost or sent twice.

    Before the notifier's per-post claims (SKIP LOCKED) and its delete right after
    Nova's answer, this failed about one run in three: the restarted worker posted
    rows the live one was posting, and the killed one's settled rows again."""
    killed: list[int] = []

    def kill_a_worker() -> None:
        victim = random.choice(cluster.worker_pids())
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
        cluster.wait_worker_restarted(victim)

    seen = await storm_with_fault(cluster, kill_a_worker)
    check_every_port_once(seen)
    assert killed and killed[0] not in cluster.worker_pids()


async def test_agent_killed_mid_storm(cluster: Cluster) -> None:
    """`vifwire agent` SIGKILLed mid-storm and started again: it re-reads OVS and the
    server, wires what it missed, and reports no port a second time."""
    first = cluster.agent_pid()

    def restart_agent() -> None:
        cluster.kill_agent()
        cluster.start_agent()

    seen = await storm_with_fault(cluster, restart_agent)
    check_every_port_once(seen)
    assert cluster.agent_pid() not in (None, first)
