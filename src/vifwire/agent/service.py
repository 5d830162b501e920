"""The OVS agent: event-driven reconcile of the integration bridge's VIFs.

There is no polling loop. Three things change a port's state, all on the event
loop: a VIF batch from OVSDB (`_on_vif_changes`), a cast from the server
(`port_bound` / `port_unbound`), and the full sync at start. Each change only
updates `_ports[port_id]` and kicks that port's worker; the worker
(`_reconcile`, one at a time per port, ports in parallel) plans from the latest
state with the pure `plan()` and executes: fetch details, tag the Port, ask the
reporter to report up/down. Errors stay with their port (retry with backoff);
nothing triggers a global resync.

Start order matters: OVSDB first (its initial snapshot gives the VLAN hints
that keep tags stable, and `connect` makes the bridge fail secure), then the
OpenFlow rules (`_flows`: NORMAL, the dead-VLAN drop and the drop flow of every
VIF already in the dead VLAN, in one bundle, so a restart never opens a gap,
or in none when vswitchd holds exactly them already, as after an agent restart;
the OpenFlow watch they need connects while the IDL loads, and then the rules a
previous agent's firewall left are read, for `Firewalls.adopt`), serving our topic
(so no bind is missed), the first heartbeat, and the full sync from the server.
Workers only run after the sync, so the sync's answer spares a lookup per VIF.
Casts received while a sync or lookup is in flight win over its (older) answer,
tracked with `_cast_seq`.

Isolation survives Open vSwitch: `_flows` (vifwire.ovs.flows) holds every rule
the agent wants and rewrites them all when vswitchd restarts or someone flushes
the table; with fail_mode=secure nothing passes until then. A VIF whose device
vanished (ofport -1) is reported down, its drop flow dropped, and both come
back when the device does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from vifwire.agent.errors import AgentError, OvsUnavailable
from vifwire.agent.firewalls import Firewalls
from vifwire.agent.model import AGENT_BINARY, AGENT_TYPE, DEAD_VLAN, Vif, VifChanges
from vifwire.agent.overlay import Overlay
from vifwire.agent.plan import Lookup, PortView, network_to_hold, plan
from vifwire.agent.reporter import StatusReporter
from vifwire.agent.tasks import KeyedWorkers, spawn
from vifwire.agent.tunnels import PATCH_TUN
from vifwire.agent.vlans import LocalVlans
from vifwire.aio import cancel_and_wait
from vifwire.bus.base import SERVER_TOPIC, Bus, BusError, agent_topic
from vifwire.messages import AgentState, FdbEntry, FdbGone, PortDetails, PortFirewall
from vifwire.ovs.bridge import OvsBridge
from vifwire.ovs.flow_snapshot import FlowSnapshots, Snapshot
from vifwire.ovs.flows import FlowTable
from vifwire.ovs.runtime import OvsError, OvsRuntime
from vifwire.settings import OvsSettings, Settings
from vifwire.trace import Stage, Tracer

log = logging.getLogger(__name__)

BACKOFF = (0.05, 5.0)
WRITE_ATTEMPTS = 5
RETRY_LATER_S = 30.0
# Base rules: the bridge is fail secure, so NORMAL switching is the agent's to add.
# NORMAL still switches VLAN 4095 between access ports, hence per-port drops too.
BASE_FLOWS = ("priority=0,actions=NORMAL", f"priority=65535,dl_vlan={DEAD_VLAN},actions=drop")


@dataclass
class PortState:
    details: PortDetails | None = None
    lookup: Lookup = Lookup.UNKNOWN
    cast_seq: int = 0  # value of OvsAgent._cast_seq when the server last told us
    vif: Vif | None = None
    network: str | None = None  # network whose local VLAN this port holds
    wired: bool = False  # WIRED was traced for the current VIF
    dropped: bool = False  # a drop flow for the port is installed
    reflow: bool = False  # the device came back: rewrite the drop flow
    returned: bool = False  # the device came back: make vswitchd reopen it
    # When the current wiring passed each of its waits (vifwire.trace.WIRING_STEPS),
    # traced with WIRED.
    steps: dict[str, float] = field(default_factory=dict)


class _Endpoint:
    """What the server may cast to `agent.<host>`; nothing else is public."""

    def __init__(self, agent: OvsAgent) -> None:
        self._agent = agent

    async def port_bound(self, port: PortDetails) -> None:
        self._agent.on_port_bound(port)

    async def port_unbound(self, port_id: str) -> None:
        self._agent.on_port_unbound(port_id)

    async def resync(self) -> None:
        await self._agent.resync()

    async def fdb_add(self, entries: list[FdbEntry]) -> None:
        if self._agent.overlay is not None:
            self._agent.overlay.fdb_add(entries)

    async def fdb_remove(self, entries: list[FdbGone]) -> None:
        if self._agent.overlay is not None:
            self._agent.overlay.fdb_remove(entries)

    async def firewall_changed(self, firewalls: list[PortFirewall]) -> None:
        self._agent.on_firewall_changed(firewalls)

    async def sg_members_changed(self, group_id: str,
                                 members: dict[str, list[str]] | None = None) -> None:
        # An older server's `members` may be stale (and is no longer sent): read instead.
        self._agent.on_members_changed(group_id)


class OvsAgent:
    def __init__(self, settings: Settings, bus: Bus, tracer: Tracer, *,
                 ovs: OvsSettings | None = None, ovs_timeout: float = 10.0,
                 rpc_timeout: float = 30.0, trunks: tuple[str, ...] | None = None) -> None:
        self.settings = settings
        self.ovs_settings = ovs or settings.ovs
        self.host = settings.host
        self._bus = bus
        self.tracer = tracer
        self._rpc_timeout = rpc_timeout
        self._bridge = OvsBridge(self.ovs_settings, self._on_vif_changes, timeout=ovs_timeout)
        runtime, bridge = OvsRuntime(self.ovs_settings), self.ovs_settings.integration_bridge
        self._flows = FlowTable(runtime, bridge, on_restored=self._on_flows_restored)
        # Trunks: where VLAN-tagged traffic for local ports arrives (the overlay's
        # patch port); a firewall port's ingress rules apply to it there too.
        self.firewalls = Firewalls(self._flows, FlowSnapshots(runtime, bridge),
                                   trunks if trunks is not None else
                                   (PATCH_TUN,) if settings.local_ip else ())
        self._reporter = StatusReporter(bus, self.host, tracer, timeout=rpc_timeout,
                                        backoff=BACKOFF)
        self._vlans = LocalVlans()
        self._workers = KeyedWorkers(self._reconcile, prefix="port")
        self._member_reads = KeyedWorkers(self._read_members, prefix="members")
        self._awaiting_members: dict[str, set[str]] = {}  # group -> ports waiting for it
        self._members_read_at: dict[str, float] = {}  # group -> when its last read began
        self._member_read_timers: dict[str, asyncio.TimerHandle] = {}  # group -> read due
        self._members_interval = settings.sg_members_read_interval_s  # the widest gap
        self._members_min_gap = min(settings.sg_members_delay_s, self._members_interval)
        self._members_gap: dict[str, float] = {}  # group -> the next gap between reads
        self._ports: dict[str, PortState] = {}
        self._cast_seq = 0
        self._snapshot = asyncio.Event()
        self._synced = False
        self._running = False
        self._tasks: list[asyncio.Task[None]] = []
        # With a tunnel address: br-tun and l2population (vifwire.agent.overlay).
        self.overlay = None if not settings.local_ip else Overlay(
            self.host, settings.local_ip, bus, self.ovs_settings, rpc_timeout=rpc_timeout,
            ovs_timeout=ovs_timeout)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        # The OpenFlow watch connects (another process) while the IDL loads, and
        # then the firewall's installed rules are read, still while it loads.
        watch = spawn(self._flows.start(), name="agent:flows-watch")
        read = spawn(self._read_firewall(watch), name="agent:firewall-read")
        try:
            await self._bridge.connect()
            try:
                await asyncio.wait_for(self._snapshot.wait(), self._bridge.timeout)
            except TimeoutError as exc:
                raise AgentError("no initial snapshot from OVSDB") from exc
            await self._install_flows(watch, read)
            if self.overlay is not None:
                await self.overlay.start()
            self._vlans.hint(_recovered_vlans(p.vif for p in self._ports.values()))
            await self._bus.serve(agent_topic(self.host), _Endpoint(self))
            self._bus.on_reconnect(self.resync)
        except BaseException as exc:  # e.g. the bus is unreachable: let go of OVS too
            self._running = False
            await cancel_and_wait(watch, read)
            if self.overlay is not None:
                await self.overlay.stop()
            await self._flows.stop()
            await self._bridge.close()
            if isinstance(exc, OvsError):
                raise OvsUnavailable(str(exc)) from exc
            raise
        self._reporter.start()
        self._tasks.append(spawn(self._heartbeat(), name="agent:heartbeat"))
        if not await self._sync():
            self._tasks.append(spawn(self._sync_until_done(), name="agent:sync"))
        log.info("OVS agent for %s started on %s (%d VIFs)", self.host,
                 self.ovs_settings.integration_bridge, self.device_count)

    async def stop(self) -> None:
        self._running = False
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()
        log.debug("stopping: workers")
        await self._workers.stop()
        for timer in self._member_read_timers.values():
            timer.cancel()
        self._member_read_timers.clear()
        await self._member_reads.stop()
        log.debug("stopping: reporter")
        await self._reporter.stop()
        await self.firewalls.stop()
        log.debug("stopping: OVS")
        if self.overlay is not None:
            await self.overlay.stop()
        await self._flows.stop()
        await self._bridge.close()
        log.debug("stopped")
        self.tracer.flush()

    async def _read_firewall(self, watch: asyncio.Task[None]) -> tuple[int, Snapshot]:
        """What a previous agent's firewall left, read once the flow table's watch
        is connected (from then on, a vswitchd restart or a flush counts a restore),
        and the flow table's restores when the read began."""
        await asyncio.shield(watch)
        restores = self._flows.restores
        return restores, await self.firewalls.read()

    async def _install_flows(self, watch: asyncio.Task[None],
                             read: asyncio.Task[tuple[int, Snapshot]]) -> None:
        """All of the agent's rules from its state, in one bundle, then keep them
        (`watch`: the flow table's start, begun before the snapshot; `read`:
        `_read_firewall`)."""
        self._flows.base(BASE_FLOWS)
        for port_id, state in self._ports.items():
            if _isolated(state.vif):
                assert state.vif is not None
                self._flows.stage(port_id, [_drop_spec(state.vif.name)])
                state.dropped = True
        try:
            await asyncio.wait_for(watch, self._bridge.timeout)
        except TimeoutError as exc:
            raise OvsUnavailable("no OpenFlow connection to "
                                 f"{self.ovs_settings.integration_bridge}") from exc
        await self._flows.ensure()
        # A previous agent's firewall rules stay until replaced, and are kept where
        # they are what this agent wants. ensure() counted one restore since the
        # read began (and never touches those rules); any other restore means they
        # may be gone (vswitchd restarted, a flush).
        restores, found = await read
        self.firewalls.adopt(self._ports, found, restores + 1)

    def _on_flows_restored(self) -> None:
        self.firewalls.restored()

    @property
    def flow_restores(self) -> int:
        """How many times every flow was (re)installed: 1 after start, +1 per loss."""
        return self._flows.restores

    @property
    def flows_kept(self) -> int:
        """Of `flow_restores`, how many found every flow in place (nothing written)."""
        return self._flows.kept

    @property
    def device_count(self) -> int:
        return sum(1 for p in self._ports.values() if p.vif is not None)

    def local_vlans(self) -> dict[str, int]:
        """network id -> local VLAN, for operators and tests."""
        return self._vlans.mapping()

    # -- inputs ------------------------------------------------------------

    def _on_vif_changes(self, changes: VifChanges) -> None:
        if not self._running:
            return
        if changes.initial and self._synced:
            # OVSDB came back (ovsdb-server restarted): whatever vswitchd did
            # meanwhile, put every rule back.
            self._tasks.append(spawn(self._flows.refresh(), name="agent:flows"))
        if changes.initial:
            for port_id, state in self._ports.items():
                if port_id not in changes.vifs and state.vif is not None:
                    state.vif, state.wired = None, False
                    self._kick(port_id)
        for port_id, vif in changes.vifs.items():
            state = self._ports.setdefault(port_id, PortState())
            if vif is not None and state.vif is None:
                self.tracer.mark(Stage.SEEN, port_id, device=vif.name)
                state.steps = {}
            if vif is None or (state.vif is not None and state.vif.name != vif.name):
                state.wired = False
            if vif is not None and not vif.lost and state.vif is not None and state.vif.lost:
                state.returned = True
            state.vif = vif
            self._kick(port_id)
        self._snapshot.set()

    def on_port_bound(self, port: PortDetails) -> None:
        if not self._running:
            return
        state = self._told(port["port_id"])
        state.details = port
        state.lookup = Lookup.KNOWN
        fw = port.get("firewall")
        self.firewalls.learn(fw)
        if fw is not None and self._synced:
            # Read now what the VIF will need: it usually comes hundreds of ms later.
            for group_id in self.firewalls.unknown_groups(fw):
                self._await_group(group_id, port["port_id"])
        self._kick(port["port_id"])

    def on_firewall_changed(self, firewalls: list[PortFirewall]) -> None:
        """Replace these ports' firewalls (a port we hold no details of gets its
        firewall with them)."""
        if not self._running:
            return
        for fw in firewalls:
            state = self._ports.get(fw["port_id"])
            if state is None or state.details is None:
                continue
            details = state.details.copy()
            details["firewall"] = fw
            self._told(fw["port_id"]).details = details
            self.firewalls.learn(fw)
            self._kick(fw["port_id"])

    def on_members_changed(self, group_id: str) -> None:
        """Read the group's members (`_read_members`); only its member flows (shared
        by the ports using it) are rewritten.

        Reads of a group held already back off as the server's rounds do: in a
        storm each server worker sends its own rounds (up to one a second), and
        each read is the whole group (1,000 addresses at 1,000 VMs). The gap
        between two reads' starts begins at `sg_members_delay_s` and doubles with
        each read while casts keep coming, up to `sg_members_read_interval_s`;
        after that long without a read it starts over. A cast within the gap
        schedules one read at its end, which every cast until then shares. A
        group not held is read at once. (A fixed 1 s gap cost an 8-VM demo 1-3
        ring pairs that found a new member's address missing.)"""
        if not self._running or group_id in self._member_read_timers:
            return  # a read is due after this cast: it sees what the cast announced
        loop = asyncio.get_running_loop()
        wait = 0.0
        if group_id in self.firewalls.members:
            since = loop.time() - self._members_read_at.get(group_id, -math.inf)
            gap = self._members_gap.get(group_id, self._members_min_gap)
            if since >= self._members_interval:
                gap = self._members_min_gap  # quiet for a while: a lone change goes soon
            wait = gap - since
            self._members_gap[group_id] = min(2 * gap, self._members_interval)
        if wait > 0:
            self._member_read_timers[group_id] = loop.call_later(
                wait, self._read_members_now, group_id)
        else:
            self._read_members_now(group_id)

    def _read_members_now(self, group_id: str) -> None:
        self._member_read_timers.pop(group_id, None)
        if self._running:
            self._member_reads.kick(group_id)

    def _awaits_members(self, port_id: str, state: PortState, wired: bool) -> bool:
        """The port is to be wired with a firewall naming groups whose members this
        agent does not hold (a bind's push carries none): read them first."""
        if not wired or state.details is None or "firewall" not in state.details:
            return False
        unknown = self.firewalls.unknown_groups(state.details["firewall"])
        for group_id in unknown:
            self._await_group(group_id, port_id)
        return bool(unknown)

    def _await_group(self, group_id: str, port_id: str) -> None:
        """Kick `port_id` once the group's members were read; the first port to
        wait starts the read."""
        waiting = self._awaiting_members.setdefault(group_id, set())
        if not waiting:
            self._member_reads.kick(group_id)
        waiting.add(port_id)

    async def _read_members(self, group_id: str) -> None:
        """The list as committed now: casts of several server workers may arrive out
        of order, and a read made after the last cast is at least as new as it. One
        read at a time per group; a cast meanwhile makes one more (KeyedWorkers),
        paced by `on_members_changed`."""
        self._members_read_at[group_id] = asyncio.get_running_loop().time()
        failures = 0
        while True:
            try:
                members: dict[str, list[str]] = await self._bus.call(
                    SERVER_TOPIC, "get_group_members", timeout=self._rpc_timeout,
                    host=self.host, group_id=group_id)
            except BusError as exc:
                failures += 1
                log.warning("members of %s: %s (retrying)", group_id, exc)
                await asyncio.sleep(_backoff(failures))
                continue
            self.firewalls.members_changed(group_id, members,
                                           wanted=group_id in self._awaiting_members)
            for port_id in self._awaiting_members.pop(group_id, ()):
                self._kick(port_id)
            return

    def on_port_unbound(self, port_id: str) -> None:
        if not self._running:
            return
        state = self._told(port_id)
        state.details = None
        state.lookup = Lookup.ABSENT
        self._kick(port_id)

    def _told(self, port_id: str) -> PortState:
        self._cast_seq += 1
        state = self._ports.setdefault(port_id, PortState())
        state.cast_seq = self._cast_seq
        return state

    def _kick(self, port_id: str) -> None:
        if self._synced:
            self._workers.kick(port_id)

    # -- full sync ---------------------------------------------------------

    async def _sync(self) -> bool:
        seq = self._cast_seq
        try:
            ports: list[PortDetails] = await self._bus.call(
                SERVER_TOPIC, "get_host_ports", timeout=self._rpc_timeout, host=self.host)
        except BusError as exc:
            log.warning("full sync failed, will retry: %s", exc)
            if not self._synced:  # meanwhile, look up each VIF on its own
                self._synced = True
                for port_id in list(self._ports):
                    self._workers.kick(port_id)
            return False
        listed = {p["port_id"]: p for p in ports}
        for port_id in listed.keys() | self._ports.keys():
            state = self._ports.setdefault(port_id, PortState())
            if state.cast_seq > seq:
                continue  # a cast newer than this answer already told us
            details = listed.get(port_id)
            if details is not None:
                state.details, state.lookup = details, Lookup.KNOWN
                self.firewalls.learn(details.get("firewall"), replace=True)
            elif state.vif is not None or state.lookup is Lookup.KNOWN:
                state.details, state.lookup = None, Lookup.ABSENT
        self._synced = True
        for port_id in list(self._ports):
            self._workers.kick(port_id)
        return self.overlay is None or await self.overlay.sync()

    async def resync(self) -> None:
        """Full sync again: the bus got its broker back (casts may have died with our
        queue), or the server asks, having failed to cast to us."""
        if self._running and not await self._sync():
            self._tasks.append(spawn(self._sync_until_done(), name="agent:sync"))

    async def _sync_until_done(self) -> None:
        delay = BACKOFF[0]
        while True:
            await asyncio.sleep(delay)
            if await self._sync():
                return
            delay = min(delay * 2, BACKOFF[1])

    # -- per-port reconcile ------------------------------------------------

    async def _reconcile(self, port_id: str) -> None:
        failures = 0
        while True:
            state = self._ports.get(port_id)
            if state is None:
                return
            if state.returned and not await self._reopen(port_id, state):
                failures += 1
                await asyncio.sleep(_backoff(failures))
                continue
            view = self._view(port_id, state)
            action = plan(view)
            if action.fetch:
                if not await self._fetch(port_id, state):
                    failures += 1
                    await asyncio.sleep(_backoff(failures))
                continue
            if _awaits_ofport(state, action.wired):
                return  # vswitchd's numbering of the VIF comes as a VIF change: a kick
            _passed(state, "numbered", action.wired)
            if self._awaits_members(port_id, state, action.wired):
                return  # the read of its remote groups kicks it (`_read_members`)
            _passed(state, "members", action.wired)
            if not await self._guard(port_id, state, view.local_vlan, action.wired):
                failures += 1
                await asyncio.sleep(_backoff(failures))
                continue
            _passed(state, "filtered", action.wired)
            if action.write is not None:
                try:
                    await self._bridge.apply(action.write)
                except (AgentError, OvsError) as exc:
                    failures += 1
                    if failures >= WRITE_ATTEMPTS or state.vif is None:
                        # No new event may ever come for this port: look again later.
                        log.error("port %s: giving up for %.0fs: %s", port_id,
                                  RETRY_LATER_S, exc)
                        asyncio.get_running_loop().call_later(RETRY_LATER_S, self._kick,
                                                              port_id)
                        return
                    log.warning("port %s: %s (retrying)", port_id, exc)
                    await asyncio.sleep(_backoff(failures))
                    continue
                if state.vif is not None and state.vif.name == action.write.name:
                    config = {k: v for k, v in state.vif.other_config.items()
                              if k not in action.write.clear_keys}
                    config.update(action.write.other_config)
                    state.vif = replace(state.vif, tag=action.write.tag, other_config=config)
                if action.write.tag == DEAD_VLAN:
                    log.info("port %s (%s) is in the dead VLAN (%s)", port_id,
                             action.write.name, state.lookup)
            if not await self._isolate(port_id, state) or \
                    not await self._unguard(port_id, state, action.wired):
                failures += 1
                await asyncio.sleep(_backoff(failures))
                continue
            if action.wired and not state.wired and state.vif is not None:
                state.wired = True
                self.tracer.mark(Stage.WIRED, port_id, vlan=view.local_vlan, steps=state.steps)
                state.steps = {}
            if action.report is not None:
                self._reporter.want(port_id, action.report)
            self._prune(port_id, state)
            return

    async def _reopen(self, port_id: str, state: PortState) -> bool:
        """Re-wire a VIF whose device returned, before it is reported up.

        Only the netdev datapath needs it (the kernel one re-adds the new device
        by itself). The new ofport is chosen here, so a dead-VLAN port gets its
        drop flow on that number before vswitchd opens the device."""
        vif = state.vif
        if vif is None or vif.lost:
            return True  # gone again: the next return starts over
        try:
            if self.ovs_settings.datapath_type == "netdev":
                ofport = await self._bridge.free_ofport()
                if _isolated(vif):
                    await self._flows.put(port_id, [_drop_spec(str(ofport))])
                    state.dropped = True
                vlan = self._vlans.vlan_of(state.network) if state.network else None
                if self.firewalls.enforced(port_id) and state.details is not None \
                        and "firewall" in state.details and vlan is not None:
                    # Its rules on the new number before vswitchd opens the device.
                    await self.firewalls.ensure(port_id, state.details, str(ofport), vlan)
                await self._bridge.reopen(vif.name, ofport)
        except OvsError as exc:
            log.warning("port %s: reopening %s: %s", port_id, vif.name, exc)
            return False
        state.returned, state.reflow = False, True
        return True

    async def _isolate(self, port_id: str, state: PortState) -> bool:
        """Keep a drop flow exactly while the VIF sits in the dead VLAN.

        While the device is lost the flow stays (nothing to match, and the device
        may return before we hear of it); on return it is rewritten, since the
        new device may have a new ofport."""
        if state.vif is not None and state.vif.lost:
            return True
        dead = _isolated(state.vif)
        if dead == state.dropped and not (dead and state.reflow):
            return True
        try:
            specs = [_drop_spec(state.vif.name)] if dead and state.vif is not None else []
            await self._flows.put(port_id, specs)
        except OvsError as exc:
            log.warning("port %s: drop flow: %s", port_id, exc)
            return state.vif is None  # the port is gone: nothing left to isolate
        state.dropped, state.reflow = dead, False
        return True

    async def _guard(self, port_id: str, state: PortState, vlan: int | None,
                     wired: bool) -> bool:
        """Install the port's firewall before its tag opens its network (and keep
        it in step after): a port is never wired unfiltered."""
        fw_wanted = wired and state.details is not None and "firewall" in state.details
        if not fw_wanted or state.vif is None or state.vif.lost or vlan is None:
            return True
        assert state.details is not None
        try:
            assert state.vif.ofport is not None  # _awaits_ofport
            await self.firewalls.ensure(port_id, state.details, str(state.vif.ofport), vlan)
        except OvsError as exc:
            log.warning("port %s: firewall: %s", port_id, exc)
            return False
        return True

    async def _unguard(self, port_id: str, state: PortState, wired: bool) -> bool:
        """Remove the firewall of a port no longer wired (after its tag closed its
        network); a lost device keeps it, to be there when the device returns."""
        if not self.firewalls.installed(port_id):
            return True
        if state.vif is not None and (state.vif.lost or (
                wired and state.details is not None and "firewall" in state.details)):
            return True
        try:
            await self.firewalls.remove(port_id)
        except OvsError as exc:
            log.warning("port %s: removing firewall: %s", port_id, exc)
            return False
        return True

    def _view(self, port_id: str, state: PortState) -> PortView:
        base = PortView(port_id, state.vif, state.details, state.lookup, None,
                        was_up=self._reporter.reported_up(port_id)
                        or (state.details is not None and state.details["status"] == "ACTIVE"))
        network = network_to_hold(base)
        if network != state.network:
            if state.network is not None:
                freed = self._vlans.release(state.network, port_id)
                if freed is not None and self.overlay is not None:
                    self.overlay.release(state.network)
            state.network = None
            if network is not None:
                held = self._vlans.acquire(network, port_id)
                state.network = network
                if self.overlay is not None and state.details is not None:
                    self.overlay.hold(network, held, state.details)
        vlan = self._vlans.vlan_of(network) if network is not None else None
        return replace(base, local_vlan=vlan)

    async def _fetch(self, port_id: str, state: PortState) -> bool:
        seq = state.cast_seq
        try:
            details: PortDetails | None = await self._bus.call(
                SERVER_TOPIC, "get_port_details", timeout=self._rpc_timeout,
                host=self.host, port_id=port_id)
        except BusError as exc:
            log.warning("port %s: get_port_details failed: %s", port_id, exc)
            return False
        if state.cast_seq == seq:
            state.details = details
            state.lookup = Lookup.KNOWN if details is not None else Lookup.ABSENT
            if details is not None:
                self.firewalls.learn(details.get("firewall"))
        return True

    def _prune(self, port_id: str, state: PortState) -> None:
        if (state.vif is None and state.network is None and state.lookup is not Lookup.KNOWN
                and not state.dropped and not self.firewalls.installed(port_id)
                and self._ports.get(port_id) is state):
            del self._ports[port_id]
            self._reporter.forget(port_id)

    # -- heartbeat ---------------------------------------------------------

    def agent_state(self, start_flag: bool) -> AgentState:
        return AgentState(
            host=self.host, agent_type=AGENT_TYPE, binary=AGENT_BINARY, topic="N/A",
            configurations={
                "bridge_mappings": {},
                "tunnel_types": ["vxlan"],
                "integration_bridge": self.ovs_settings.integration_bridge,
                "datapath_type": self.ovs_settings.datapath_type,
                "devices": self.device_count,
                **(self.overlay.configurations() if self.overlay is not None else {}),
            },
            start_flag=start_flag)

    async def _heartbeat(self) -> None:
        start_flag = True
        while True:
            try:
                await self._bus.cast(SERVER_TOPIC, "report_state",
                                     agent=self.agent_state(start_flag))
                start_flag = False
            except BusError as exc:
                log.warning("report_state failed: %s", exc)
            await asyncio.sleep(self.settings.agent_heartbeat_s)


def _recovered_vlans(vifs: Iterable[Vif | None]) -> list[tuple[str, int]]:
    pairs = []
    for vif in vifs:
        if vif is None:
            continue
        network, tag = vif.other_config.get("net_uuid"), vif.other_config.get("tag")
        if network and tag and tag.isdigit():
            pairs.append((network, int(tag)))
    return pairs


def _passed(state: PortState, step: str, wired: bool) -> None:
    """The port's wiring got past `step` (the first time only: a retry keeps it)."""
    if wired and not state.wired and step not in state.steps:
        state.steps[step] = time.time()


def _awaits_ofport(state: PortState, wired: bool) -> bool:
    """The port is to be wired with a firewall, whose rules match its VIF by
    OpenFlow port number, and vswitchd has not numbered the VIF yet."""
    vif = state.vif
    return wired and vif is not None and not vif.lost and vif.ofport is None \
        and state.details is not None and "firewall" in state.details


def _isolated(vif: Vif | None) -> bool:
    return vif is not None and not vif.lost and vif.tag == DEAD_VLAN


def _drop_spec(name: str) -> str:
    return f"priority=2,in_port={name},actions=drop"


def _backoff(failures: int) -> float:
    return min(BACKOFF[0] * 2 ** (failures - 1), BACKOFF[1])
