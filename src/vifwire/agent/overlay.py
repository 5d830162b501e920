"""The overlay between hosts: br-tun kept in step with l2population's pushes.

State, all on the agent's loop: the vxlan networks this host holds a local
VLAN for (`hold`/`release`, from the agent's VLAN bookkeeping) and the remote
ports the server announced (`fdb_add`/`fdb_remove` casts, and the full sync's
`get_host_fdb` answer). Each change only updates that state and wakes one
worker, which asks the pure `tunnels.plan()` what br-tun must hold and writes
the difference: new tunnel ports first, then the changed rule groups in one
bundle, then the tunnel ports no rule names any more. So a burst of casts costs
one write, and a write never runs concurrently with another.

Restarts: the worker first writes after the first successful sync, and that
write replaces the whole table in one bundle; until then the previous run's
rules keep forwarding. Casts that arrive while the sync is in flight win over
its (older) answer, port by port (`_touched`), as for the agent's ports.

Remote entries are kept for networks not (yet) held here: a port bound but not
plugged yet must not miss them. They are dropped when the network's VLAN is
released, since the server stops telling a host about a network once it has no
ports there. A remove names the host it removes from, so a late remove of a
port that moved cannot erase the port's new place.
"""

from __future__ import annotations

import asyncio
import logging

from vifwire.agent.tasks import spawn
from vifwire.agent.tunnels import PATCH_INT, PATCH_TUN, LocalNet, Memo, plan
from vifwire.aio import cancel_and_wait
from vifwire.bus.base import SERVER_TOPIC, Bus, BusError
from vifwire.messages import FdbEntry, FdbGone, PortDetails
from vifwire.ovs.runtime import OvsError
from vifwire.ovs.tunnel_bridge import TunnelBridge
from vifwire.settings import OvsSettings

log = logging.getLogger(__name__)

BACKOFF = (0.05, 5.0)


class Overlay:
    def __init__(self, host: str, local_ip: str, bus: Bus, ovs: OvsSettings, *,
                 rpc_timeout: float = 30.0, ovs_timeout: float = 10.0) -> None:
        self.host = host
        self.local_ip = local_ip
        self._bus = bus
        self._rpc_timeout = rpc_timeout
        self.bridge = TunnelBridge(ovs, local_ip, patch_int=PATCH_INT, patch_tun=PATCH_TUN,
                                   timeout=ovs_timeout)
        self._local: dict[str, LocalNet] = {}
        self._remote: dict[str, FdbEntry] = {}  # port id -> where it lives
        self._seq = 0
        self._touched: dict[str, int] = {}  # port id -> _seq of the last cast about it
        self._tunnels: dict[str, str] = {}  # vxlan ports on br-tun: name -> remote ip
        self._flows: dict[str, tuple[str, ...]] | None = None  # None: rewrite them all
        self._memo: Memo = {}
        self._synced = asyncio.Event()  # the first sync succeeded
        self._dirty = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.writes = 0  # completed reconciles that changed br-tun (for tests)
        self.idle = asyncio.Event()  # set while br-tun matches the state

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        self._tunnels = await self.bridge.setup()
        self._worker = spawn(self._run(), name="overlay:writer")

    async def stop(self) -> None:
        if self._worker is not None:
            await cancel_and_wait(self._worker)
            self._worker = None
        await self.bridge.close()

    def configurations(self) -> dict[str, object]:
        """What the heartbeat adds (Neutron's keys): the server's l2pop reads them."""
        return {"tunneling_ip": self.local_ip, "l2_population": True,
                "arp_responder_enabled": True,
                "tunnel_bridge": self.bridge.name}

    def tunnels(self) -> dict[str, str]:
        """The vxlan ports now on br-tun (name -> remote address)."""
        return dict(self._tunnels)

    def remote_ports(self) -> dict[str, FdbEntry]:
        return dict(self._remote)

    # -- inputs ------------------------------------------------------------

    def hold(self, network_id: str, vlan: int, details: PortDetails) -> None:
        """The agent gave `network_id` the local VLAN `vlan`."""
        vni = details["segmentation_id"]
        if details["network_type"] != "vxlan" or vni is None:
            return
        net = LocalNet(vlan, vni)
        if self._local.get(network_id) != net:
            self._local[network_id] = net
            self._kick()

    def release(self, network_id: str) -> None:
        """No port of `network_id` is left here."""
        if self._local.pop(network_id, None) is None:
            return
        for port_id in [p for p, e in self._remote.items() if e["network_id"] == network_id]:
            del self._remote[port_id]
        self._kick()

    def fdb_add(self, entries: list[FdbEntry]) -> None:
        for entry in entries:
            if entry["host"] == self.host:
                continue
            self._touch(entry["port_id"])
            self._remote[entry["port_id"]] = entry
        self._kick()

    def fdb_remove(self, entries: list[FdbGone]) -> None:
        for gone in entries:
            self._touch(gone["port_id"])
            known = self._remote.get(gone["port_id"])
            if known is not None and known["host"] == gone["host"]:
                del self._remote[gone["port_id"]]
        self._kick()

    async def sync(self) -> bool:
        """Replace what we know of remote ports with the server's answer."""
        seq = self._seq
        try:
            entries: list[FdbEntry] = await self._bus.call(
                SERVER_TOPIC, "get_host_fdb", timeout=self._rpc_timeout, host=self.host)
        except BusError as exc:
            log.warning("fdb sync failed, will retry: %s", exc)
            return False
        fresh = {e["port_id"]: e for e in entries if e["host"] != self.host}
        for port_id in fresh.keys() | self._remote.keys():
            if self._touched.get(port_id, 0) > seq:
                continue  # a cast newer than this answer already told us
            if port_id in fresh:
                self._remote[port_id] = fresh[port_id]
            else:
                del self._remote[port_id]
        self._touched = {p: s for p, s in self._touched.items() if s > seq}
        self._synced.set()
        self._kick()
        return True

    def _touch(self, port_id: str) -> None:
        self._seq += 1
        self._touched[port_id] = self._seq

    def _kick(self) -> None:
        self.idle.clear()
        self._dirty.set()

    # -- the writer --------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        await self._synced.wait()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._reconcile()
            except OvsError as exc:
                failures += 1
                self._flows = None  # unknown what landed: rewrite it all next time
                log.warning("tunnel bridge: %s (retrying)", exc)
                await asyncio.sleep(min(BACKOFF[0] * 2 ** (failures - 1), BACKOFF[1]))
                self._dirty.set()
                continue
            failures = 0
            if not self._dirty.is_set():
                self.idle.set()

    async def _reconcile(self) -> None:
        wanted = plan(self.local_ip, self._local, self._remote.values(), self._memo)
        changed = False
        for name, remote_ip in wanted.tunnels.items():
            if self._tunnels.get(name) != remote_ip:
                await self.bridge.add_tunnel(name, remote_ip)
                self._tunnels[name] = remote_ip
                log.info("tunnel %s to %s added", name, remote_ip)
                changed = True
        if self._flows is None:
            await self.bridge.replace_all(wanted.flows)
            changed = True
        else:
            old = self._flows
            changes: dict[str, tuple[str, ...] | None] = {
                key: flows for key, flows in wanted.flows.items() if old.get(key) != flows}
            changes.update({key: None for key in old if key not in wanted.flows})
            if changes:
                await self.bridge.apply(changes)
                changed = True
        self._flows = dict(wanted.flows)
        for name in [n for n in self._tunnels if n not in wanted.tunnels]:
            await self.bridge.remove_tunnel(name)
            del self._tunnels[name]
            log.info("tunnel %s removed", name)
            changed = True
        if changed:
            self.writes += 1
