"""Watching the integration bridge's VIFs through the OVSDB IDL.

The IDL runs in ovsdbapp's connection thread. `VifIdl` overrides two hooks of
that thread: `notify()` (called once per changed row after an update is fully
applied) only notes which ports' cached VIFs went stale; `run()` (one batch of
messages from ovsdb-server) then recomputes those VIFs, diffs them against what
it last reported and hands the differences to `sink` as one `VifChanges`
value. The sink is the single point where this thread meets the event loop (it
uses `call_soon_threadsafe`), and because every observation travels through
it, in order, the loop never needs sequence numbers or IDL reads of its own.

Invariants:
- only Ports of the integration bridge count, minus the bridge's own port and
  patch ports, and only Interfaces with external_ids:iface-id;
- after (re)connecting the IDL reloads everything without row notifications,
  so a change of session seqno (and the first dump) triggers a full recompute,
  reported as an `initial` batch;
- the per-Port cache makes a batch cost O(ports on the bridge) list walking
  plus O(changed ports) row decoding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ovs.db import idl as ovs_idl
from ovsdbapp.backend.ovs_idl import connection

from vifwire.agent.model import Vif, VifChanges

log = logging.getLogger(__name__)

# Only what the agent reads (and writes: Port.tag/other_config; Open_vSwitch cfg
# counters for ovsdbapp's vsctl-style transactions; Bridge for add_br).
MONITORED = {
    "Open_vSwitch": ["bridges", "cur_cfg", "next_cfg"],
    "Bridge": ["name", "ports", "datapath_type", "fail_mode"],
    "Port": ["name", "interfaces", "tag", "other_config"],
    "Interface": ["name", "type", "external_ids", "ofport"],
}

Sink = Callable[[VifChanges], None]


class VifIdl(connection.OvsdbIdl):
    """An IDL that reports the integration bridge's VIFs to `sink` as they change."""

    def __init__(self, remote: str, schema_helper: Any, *, bridge: str, sink: Sink,
                 **kwargs: Any) -> None:
        super().__init__(remote, schema_helper, **kwargs)
        self._bridge = bridge
        self._sink = sink
        self._reported: dict[str, Vif] = {}
        self._cache: dict[Any, tuple[Vif, ...]] = {}  # Port uuid -> its VIFs
        self._owner: dict[Any, Any] = {}  # Interface uuid -> Port uuid
        self._dirty = False
        self._session_seqno: int | None = None

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        table = row._table.name
        if table == "Port":
            self._cache.pop(row.uuid, None)
            self._dirty = True
        elif table == "Interface":
            owner = (self._owner.pop(row.uuid, None) if event == ovs_idl.ROW_DELETE
                     else self._owner.get(row.uuid))
            self._cache.pop(owner, None)
            self._dirty = True
        elif table == "Bridge":
            self._dirty = True
        super().notify(event, row, updates)

    def run(self) -> bool:
        changed: bool = super().run()
        if self.state != ovs_idl.Idl.IDL_S_MONITORING:
            return changed
        seqno = self._session.get_seqno()
        initial = seqno != self._session_seqno
        if initial:
            self._session_seqno = seqno
            self._cache.clear()
            self._owner.clear()
        if initial or self._dirty:
            self._dirty = False
            self._publish(initial)
        return changed

    def _publish(self, initial: bool) -> None:
        current: dict[str, Vif] = {}
        for port in self._bridge_ports():
            vifs = self._cache.get(port.uuid)
            if vifs is None:
                vifs = self._cache[port.uuid] = self._vifs_of(port)
            for vif in vifs:
                current[vif.port_id] = vif
        changes: dict[str, Vif | None]
        if initial:
            changes = dict(current)
        else:
            changes = {pid: vif for pid, vif in current.items() if self._reported.get(pid) != vif}
            changes.update((pid, None) for pid in self._reported if pid not in current)
        self._reported = current
        if changes or initial:
            try:
                self._sink(VifChanges(changes, initial=initial))
            except RuntimeError:
                log.debug("VIF changes dropped: the event loop is closed")

    def _bridge_ports(self) -> list[Any]:
        for bridge in self.tables["Bridge"].rows.values():
            if bridge.name == self._bridge:
                return list(bridge.ports)
        return []

    def _vifs_of(self, port: Any) -> tuple[Vif, ...]:
        if port.name == self._bridge:
            return ()
        tag = port.tag[0] if port.tag else None
        other_config = dict(port.other_config)
        vifs = []
        for iface in port.interfaces:
            self._owner[iface.uuid] = port.uuid
            ids = iface.external_ids
            port_id = ids.get("iface-id")
            if not port_id or iface.type == "patch":
                continue
            ofport = iface.ofport[0] if iface.ofport else None
            vifs.append(Vif(port_id=port_id, name=iface.name, mac=ids.get("attached-mac"),
                            ofport=ofport, tag=tag, other_config=other_config,
                            vm_uuid=ids.get("vm-uuid"), iface_status=ids.get("iface-status")))
        return tuple(vifs)
