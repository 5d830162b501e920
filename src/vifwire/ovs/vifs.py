"""Watching the integration bridge's VIFs through the OVSDB IDL.

The IDL runs in ovsdbapp's connection thread (owned by `vifwire.ovs.bridge`,
whose `LoopBoundary` is the sink). `VifIdl` overrides two hooks of
that thread: `notify()` (called once per changed row after an update is fully
applied) only notes which Ports went stale; `run()` (one batch of messages from
ovsdb-server) then recomputes those Ports' VIFs, diffs them against what it last
reported and hands the differences to `sink` as one `VifChanges` value. Because
every observation travels through it, in order, the loop never needs sequence
numbers or IDL reads of its own.

Invariants:
- only Ports of the integration bridge count, minus the bridge's own port and
  patch ports, and only Interfaces with external_ids:iface-id;
- after (re)connecting the IDL reloads everything without row notifications,
  so a change of session seqno (and the first dump) triggers a full recompute,
  reported as an `initial` batch;
- a batch costs O(changed Ports): the bridge's member set is re-read (as raw
  UUIDs, no row objects) only when the Bridge row changed, and only stale
  Ports are decoded. A boot storm sends several updates per port; walking every
  port of the bridge for each of them made the agent's cost grow with the
  square of the VMs on the host;
- a VIF whose device is gone is reported with `lost=True`, and again without
  when the device returns: vswitchd shows it as Interface.ofport -1 (it could not
  open the device, e.g. after a restart) or admin_state "down" (the netdev
  datapath keeps the ofport of a deleted veth but sees it lose IFF_UP).

Not yielding per row: python-ovs calls the `cooperative_yield()` hook once per
row update, a no-op by default; ovsdbapp's IDL makes it `time.sleep(0)` for
eventlet. Nothing here runs under eventlet, and on a loaded host every such
sleep gives the core away: the initial dump of 1,000 ports took 3 s wall for
0.6 s of CPU, most of it in 2,000 sleeps (bench/agent_restart.py). Python's
GIL switch interval still lets the event loop's thread run during a long dump.

Speed-up behind a switch (`raw_rows`, OvsSettings.raw_rows): rows are read
from python-ovs's private `Row._data` (the committed datums) instead of the
public attributes. The bridge's member set is then a set of raw UUIDs (the
public `bridge.ports` builds a Row per member), and each VIF's columns are the
datums' values: a public read of a set or map column converts the datum to
Python, back to a datum (to merge a transaction's pending writes) and to Python
again, which made decoding 1,000 VIFs the larger half of an agent restart's
CPU (bench/agent_restart.py). The raw read sees what ovsdb-server committed,
never a write still in flight, which is what the VIF stream reports anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from ovs.db import idl as ovs_idl
from ovsdbapp.backend.ovs_idl import connection

from vifwire.ovs.model import Vif, VifChanges

log = logging.getLogger(__name__)

# Only what the agent reads (and writes: Port.tag/other_config,
# Interface.ofport_request; Open_vSwitch cfg counters for ovsdbapp's vsctl-style
# transactions; Bridge for add_br and fail_mode).
MONITORED = {
    "Open_vSwitch": ["bridges", "cur_cfg", "next_cfg"],
    "Bridge": ["name", "ports", "datapath_type", "fail_mode"],
    "Port": ["name", "interfaces", "tag", "other_config"],
    "Interface": ["name", "type", "external_ids", "ofport", "admin_state", "ofport_request"],
}

Sink = Callable[[VifChanges], None]


class VifIdl(connection.OvsdbIdl):
    """An IDL that reports the integration bridge's VIFs to `sink` as they change."""

    def __init__(self, remote: str, schema_helper: Any, *, bridge: str, sink: Sink,
                 raw_rows: bool = True, **kwargs: Any) -> None:
        super().__init__(remote, schema_helper, **kwargs)
        self._read: _Reader = _RawReader(self) if raw_rows else _PlainReader()
        self._bridge = bridge
        self._sink = sink
        self._reported: dict[str, Vif] = {}  # port id -> its VIF, as last reported
        self._vifs: dict[Any, tuple[Vif, ...]] = {}  # member Port uuid -> its VIFs
        self._members: set[Any] = set()  # Port uuids of the bridge
        self._owner: dict[Any, Any] = {}  # Interface uuid -> Port uuid
        self._stale: set[Any] = set()  # Port uuids to decode again
        self._bridge_changed = False
        self._session_seqno: int | None = None

    def cooperative_yield(self) -> None:
        """No yield per row update (python-ovs's default; see the module docstring)."""

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        table = row._table.name
        if table == "Port":
            self._stale.add(row.uuid)
        elif table == "Interface":
            owner = (self._owner.pop(row.uuid, None) if event == ovs_idl.ROW_DELETE
                     else self._owner.get(row.uuid))
            if owner is not None:  # a new Interface comes with its Port's change
                self._stale.add(owner)
        elif table == "Bridge":
            self._bridge_changed = True
        super().notify(event, row, updates)

    def run(self) -> bool:
        changed: bool = super().run()
        if self.state != ovs_idl.Idl.IDL_S_MONITORING:
            return changed
        seqno = self._session.get_seqno()
        if seqno != self._session_seqno:
            self._session_seqno = seqno
            self._publish_all()
        elif self._stale or self._bridge_changed:
            self._publish_stale()
        return changed

    def _publish_all(self) -> None:
        """Everything, from scratch: the first dump or a reconnect."""
        self._vifs.clear()
        self._owner.clear()
        self._stale.clear()
        self._bridge_changed = False
        self._members = self._bridge_members()
        current: dict[str, Vif] = {}
        ports = self.tables["Port"].rows
        for uuid in self._members:
            row = ports.get(uuid)
            vifs = self._vifs[uuid] = self._vifs_of(row) if row is not None else ()
            for vif in vifs:
                current[vif.port_id] = vif
        self._reported = current
        self._emit(VifChanges(dict(current), initial=True))

    def _publish_stale(self) -> None:
        stale, self._stale = self._stale, set()
        if self._bridge_changed:
            self._bridge_changed = False
            members = self._bridge_members()
            stale |= members ^ self._members
            self._members = members
        ports = self.tables["Port"].rows
        before: dict[Any, tuple[Vif, ...]] = {}
        for uuid in stale:
            before[uuid] = self._vifs.pop(uuid, ())
            row = ports.get(uuid) if uuid in self._members else None
            if row is not None:
                self._vifs[uuid] = self._vifs_of(row)
        changes: dict[str, Vif | None] = {}
        # Gone first, then present: a VIF that moved to another Port in this
        # batch must end up present.
        for uuid, old in before.items():
            now = {vif.port_id for vif in self._vifs.get(uuid, ())}
            for vif in old:
                if vif.port_id not in now and self._reported.get(vif.port_id) == vif:
                    del self._reported[vif.port_id]
                    changes[vif.port_id] = None
        for uuid in before:
            for vif in self._vifs.get(uuid, ()):
                if self._reported.get(vif.port_id) != vif:
                    self._reported[vif.port_id] = vif
                    changes[vif.port_id] = vif
        if changes:
            self._emit(VifChanges(changes))

    def _emit(self, changes: VifChanges) -> None:
        try:
            self._sink(changes)
        except RuntimeError:
            log.debug("VIF changes dropped: the event loop is closed")

    def _bridge_members(self) -> set[Any]:
        """The bridge's Port uuids (raw: no row objects built)."""
        read = self._read
        for bridge in self.tables["Bridge"].rows.values():
            if read.one(bridge, "name") == self._bridge:
                return read.uuids(bridge, "ports")
        return set()

    def _vifs_of(self, port: Any) -> tuple[Vif, ...]:
        read = self._read
        if read.one(port, "name") == self._bridge:
            return ()
        tags = read.many(port, "tag")
        tag = tags[0] if tags else None
        other_config = read.mapping(port, "other_config")
        vifs = []
        for iface in read.refs(port, "interfaces", "Interface"):
            self._owner[iface.uuid] = port.uuid
            ids = read.mapping(iface, "external_ids")
            port_id = ids.get("iface-id")
            if not port_id or read.one(iface, "type") == "patch":
                continue
            vifs.append(Vif(port_id=port_id, name=read.one(iface, "name"),
                            mac=ids.get("attached-mac"), tag=tag, other_config=other_config,
                            vm_uuid=ids.get("vm-uuid"), iface_status=ids.get("iface-status"),
                            lost=_lost(read, iface), ofport=_ofport(read, iface)))
        return tuple(vifs)


class _Reader(Protocol):
    """How `VifIdl` reads a row's columns: a scalar, an optional or set column
    (a list), a map (a dict), references (the rows) and their UUIDs."""

    def one(self, row: Any, column: str) -> Any: ...
    def many(self, row: Any, column: str) -> list[Any]: ...
    def mapping(self, row: Any, column: str) -> dict[Any, Any]: ...
    def refs(self, row: Any, column: str, table: str) -> list[Any]: ...
    def uuids(self, row: Any, column: str) -> set[Any]: ...


class _PlainReader:
    """python-ovs's public row attributes."""

    def one(self, row: Any, column: str) -> Any:
        return getattr(row, column)

    def many(self, row: Any, column: str) -> list[Any]:
        return list(getattr(row, column))

    def mapping(self, row: Any, column: str) -> dict[Any, Any]:
        return dict(getattr(row, column))

    def refs(self, row: Any, column: str, table: str) -> list[Any]:
        return list(getattr(row, column))

    def uuids(self, row: Any, column: str) -> set[Any]:
        return {ref.uuid for ref in getattr(row, column)}


class _RawReader:
    """The committed datums in `Row._data` (the `raw_rows` speed-up): each datum's
    `values` maps an atom to None (a set) or to the value's atom (a map)."""

    def __init__(self, idl: ovs_idl.Idl) -> None:
        self._tables = idl.tables

    def one(self, row: Any, column: str) -> Any:
        values = row._data[column].values
        return next(iter(values)).value if values else None

    def many(self, row: Any, column: str) -> list[Any]:
        return [atom.value for atom in row._data[column].values]

    def mapping(self, row: Any, column: str) -> dict[Any, Any]:
        return {key.value: value.value for key, value in row._data[column].values.items()}

    def refs(self, row: Any, column: str, table: str) -> list[Any]:
        rows = self._tables[table].rows
        found = (rows.get(atom.value) for atom in row._data[column].values)
        return [ref for ref in found if ref is not None]

    def uuids(self, row: Any, column: str) -> set[Any]:
        return {atom.value for atom in row._data[column].values}


def _ofport(read: _Reader, iface: Any) -> int | None:
    numbers = read.many(iface, "ofport")
    return numbers[0] if numbers and numbers[0] > 0 else None


def _lost(read: _Reader, iface: Any) -> bool:
    """vswitchd has no usable device for the Interface (see the module docstring)."""
    # Optional columns read as lists; [] means vswitchd has not said yet (a new
    # port): that is not a loss, so the plug path never waits for vswitchd.
    return read.many(iface, "ofport") == [-1] or read.many(iface, "admin_state") == ["down"]
