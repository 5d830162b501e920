"""Proof by traffic: a ring of pings, and a probe that must not answer.

Ring: every wired VM pings the next one (the last pings the first), so each
VM both sends and answers. Isolation: a second network `<name>-isolation-<run>`
gets a subnet with the SAME CIDR as the target network and one probe VM, booted
exactly like the others, at an address unused on the target network. If VM 0
can reach it, two tenant networks share a segment: isolation is broken.

A pair that does not answer at once is tried again, with a longer wait for
the answer (RETRY_WAIT_S) and more pairs at once, for up to `RING_SETTLE_S`:
across hosts the path needs what reaches the other hosts only after a port is
up (l2population's forwarding entries, the group's member addresses), as in
Neutron, and a userspace switch forwards a VM's packets only between the rounds
of its main loop, which last hundreds of ms while a storm still reconfigures it.
Such pairs count as late (`ring_late`, and `ring_settled_s` says when the last
answered); a pair that never answers fails. Most late pairs after 1,000-VM
boots (100-150 of each host's 250) were the kernel's ARP table, shared by every
VM namespace, being full: their pings failed with ENOBUFS. The storm makes room
in it first (`vifwire.compute.neighbours`).

The probe network is recorded in the run state before use, so teardown and
crashed-run cleanup remove it like everything else.

Port security (`boot --port-security`): every VM is in its project's default
group, whose rules let members in, so the ring proves that members reach each
other. Then an outsider VM joins the target network in a group of its own
(Neutron's new-group rules: egress only) on another host than VM 0 when there is
one: VM 0 must not get an answer from it (its group lets nothing in), and it must
not get one from VM 0 (VM 0's group lets only members in). Both are refused only
when the agents enforce the groups. The group is recorded in the run state and
deleted after its port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from vifwire.compute.errors import ComputeError
from vifwire.compute.neutron import TargetNetwork
from vifwire.compute.result import VmRecord
from vifwire.compute.vm import Vm

if TYPE_CHECKING:
    from vifwire.compute.storm import Storm

RING_SETTLE_S = 30.0  # how long a ring pair that did not answer at once is tried again
RETRY_WAIT_S = 3  # how long a retry waits for an answer
RETRY_CONCURRENCY_FACTOR = 4  # retries in flight at once, per first-round ping


def pick_unused_ip(cidr: str, used: Iterable[str]) -> str:
    """The highest host address of `cidr` not in `used` (pure)."""
    taken = set(used)
    for address in reversed(list(ipaddress.ip_network(cidr).hosts())):
        if str(address) not in taken:
            return str(address)
    raise ComputeError(f"no unused address left in {cidr} for the isolation probe")


async def check_connectivity(storm: Storm) -> None:
    conn = storm.result.connectivity
    conn.checked = True
    wired = [r for r in storm.result.vms if r.plugged]
    await _ring(storm, wired)
    if not wired:
        conn.detail = "no VM was wired; nothing to ping from"
        return
    try:
        await _isolation(storm, storm.vms[wired[0].port_id])
    except ComputeError as exc:
        conn.detail = f"isolation probe failed: {exc}"
    if storm.config.port_security:
        conn.port_security = True
        try:
            await _outsider(storm, storm.vms[wired[0].port_id])
        except ComputeError as exc:
            conn.detail = f"outsider check failed: {exc}"


async def _ring(storm: Storm, wired: list[VmRecord]) -> None:
    conn = storm.result.connectivity
    if len(wired) < 2:
        return
    first = asyncio.Semaphore(storm.config.ping_concurrency)
    # Retries wait longer for an answer; more at once, so a round of them stays short.
    again = asyncio.Semaphore(storm.config.ping_concurrency * RETRY_CONCURRENCY_FACTOR)

    async def one(src: VmRecord, dst: VmRecord, count: int, wait_s: int,
                  limit: asyncio.Semaphore) -> bool:
        async with limit:
            ok = await storm.vms[src.port_id].ping(dst.ip, count, wait_s)
        if ok:
            conn.ring_ok += 1
            conn.cross_host_ok += src.host != dst.host
            storm.count("pings")
        return ok

    async def round_of(pairs: list[tuple[VmRecord, VmRecord]], count: int, wait_s: int,
                       limit: asyncio.Semaphore) -> list[tuple[VmRecord, VmRecord]]:
        answered = await asyncio.gather(*(
            asyncio.create_task(one(s, d, count, wait_s, limit), name=f"storm:ping:{i}")
            for i, (s, d) in enumerate(pairs)))
        return [pair for pair, ok in zip(pairs, answered, strict=True) if not ok]

    pairs = [(src, wired[(i + 1) % len(wired)]) for i, src in enumerate(wired)]
    conn.ring_pairs = len(pairs)
    failing = await round_of(pairs, 3, 1, first)
    loop = asyncio.get_running_loop()
    start = loop.time()
    late = len(failing)
    while failing and loop.time() - start < RING_SETTLE_S:
        await asyncio.sleep(1.0)
        before = len(failing)
        failing = await round_of(failing, 1, RETRY_WAIT_S, again)
        if len(failing) < before:
            conn.ring_settled_s = round(loop.time() - start, 2)
    conn.ring_late = late - len(failing)
    conn.ring_failed = [{"from": s.port_id, "to": d.port_id, "ip": d.ip} for s, d in failing]


async def _isolation(storm: Storm, source: Vm) -> None:
    conn = storm.result.connectivity
    neutron, target = storm.neutron, storm.target
    name = f"{storm.config.network}-isolation-{storm.state.run_id}"
    network = await neutron.create_network(name)
    storm.state.add(network=network["id"])
    subnet = await neutron.create_subnet(network["id"], target.subnet["cidr"],
                                         name=f"{name}-v4")
    used = [f["ip_address"] for p in await neutron.list_ports(network_id=target.id)
            for f in p.get("fixed_ips", [])]
    used += [target.subnet.get("gateway_ip") or "", subnet.get("gateway_ip") or ""]
    conn.probe_ip = pick_unused_ip(target.subnet["cidr"], used)
    probe_net = TargetNetwork(network, subnet, {subnet["id"]: subnet})
    record = VmRecord(index=len(storm.result.records), vm_uuid=str(uuid.uuid4()), probe=True)
    storm.result.records.append(record)
    # On another host than the source when there is one: isolation must hold
    # across the overlay too, not only on one switch.
    source_index = next(r.index for r in storm.result.vms if r.port_id == source.spec.port_id)
    await storm.boot(record, probe_net, storm.place(source_index + 1),
                     fixed_ips=[{"subnet_id": subnet["id"], "ip_address": conn.probe_ip}])
    if not record.plugged:
        conn.detail = f"probe VM was not wired ({record.stage}: {record.error})"
        return
    conn.probe_wired = True
    conn.probe_reachable = await source.ping(conn.probe_ip)
    if conn.probe_reachable:
        conn.detail = (f"VM 0 reached {conn.probe_ip} on {name}: the two networks share "
                       "a segment")


async def _outsider(storm: Storm, source: Vm) -> None:
    """A VM of another group on the target network: refused both ways (module doc)."""
    conn = storm.result.connectivity
    group = await storm.neutron.create_security_group(
        f"{storm.config.network}-outsider-{storm.state.run_id}", storm.config.project_id)
    storm.state.add(security_group=group["id"])
    record = VmRecord(index=len(storm.result.records), vm_uuid=str(uuid.uuid4()), probe=True)
    storm.result.records.append(record)
    source_index = next(r.index for r in storm.result.vms if r.port_id == source.spec.port_id)
    await storm.boot(record, storm.target, storm.place(source_index + 1),
                     security_groups=[group["id"]])
    if not record.plugged:
        conn.detail = f"outsider VM was not wired ({record.stage}: {record.error})"
        return
    conn.outsider_ip = record.ip
    outsider = storm.vms[record.port_id]
    to_it, from_it = await asyncio.gather(source.ping(record.ip),
                                          outsider.ping(source.spec.ip))
    conn.outsider_answered = (["member->outsider"] if to_it else []) + \
        (["outsider->member"] if from_it else [])
    conn.outsider_refused = not conn.outsider_answered
