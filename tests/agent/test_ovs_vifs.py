"""VifIdl against a real ovsdb-server: what it reports, and what it keeps."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from vifwire.ovs.idl import open_connection
from vifwire.ovs.model import VifChanges
from vifwire.ovs.runtime import OvsRuntime
from vifwire.ovs.vifs import MONITORED, VifIdl

pytestmark = pytest.mark.ovs


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_deleted_interfaces_are_forgotten(ovs: OvsRuntime, fast: bool) -> None:
    bridge = ovs.settings.integration_bridge
    batches: list[VifChanges] = []
    lock = threading.Lock()

    def sink(changes: VifChanges) -> None:
        with lock:
            batches.append(changes)

    def last_seen(port_id: str) -> object:
        with lock:
            for batch in reversed(batches):
                if port_id in batch.vifs:
                    return batch.vifs[port_id]
        return "never"

    conn = open_connection(ovs.settings.connection, MONITORED, idl_class=VifIdl,
                           bridge=bridge, sink=sink, raw_rows=fast)
    conn.start()
    try:
        idl = conn.idl
        port_id, tap = str(uuid.uuid4()), "tapmon" + uuid.uuid4().hex[:6]
        ovs.vsctl("add-port", bridge, tap, "--", "set", "Interface", tap,
                  f"external_ids:iface-id={port_id}")
        _wait(lambda: last_seen(port_id) not in ("never", None), "the VIF")
        ovs.vsctl("del-port", bridge, tap)
        _wait(lambda: last_seen(port_id) is None, "the VIF to leave")
        with conn.lock:
            assert idl._owner == {}  # no entry per Interface ever seen
    finally:
        conn.stop(5)


def _recording_idl(ovs: OvsRuntime,
                   fast: bool) -> tuple[object, list[VifChanges], threading.Lock]:
    batches: list[VifChanges] = []
    lock = threading.Lock()

    def sink(changes: VifChanges) -> None:
        with lock:
            batches.append(changes)

    conn = open_connection(ovs.settings.connection, MONITORED, idl_class=VifIdl,
                           bridge=ovs.settings.integration_bridge, sink=sink,
                           raw_rows=fast)
    conn.start()
    return conn, batches, lock


def test_a_batch_names_only_the_ports_that_changed(ovs: OvsRuntime, fast: bool) -> None:
    """Every other VIF on the bridge stays out of a batch about one port."""
    bridge = ovs.settings.integration_bridge
    ids = [str(uuid.uuid4()) for _ in range(6)]
    for i, port_id in enumerate(ids):
        ovs.vsctl("add-port", bridge, f"tapb{i}", "--", "set", "Interface", f"tapb{i}",
                  f"external_ids:iface-id={port_id}")
    conn, batches, lock = _recording_idl(ovs, fast)
    try:
        _wait(lambda: bool(batches), "the initial batch")
        with lock:
            assert batches[0].initial and set(batches[0].vifs) == set(ids)
            batches.clear()
        ovs.vsctl("set", "Interface", "tapb3", "external_ids:attached-mac=fa:16:3e:00:00:03")
        ovs.vsctl("set", "Port", "tapb4", "tag=7")
        ovs.vsctl("del-port", bridge, "tapb5")
        _wait(lambda: any(None in b.vifs.values() for b in batches), "the deletion")
        with lock:
            named = [port_id for b in batches for port_id in b.vifs]
            merged = {k: v for b in batches for k, v in b.vifs.items()}
        assert sorted(set(named)) == sorted(ids[3:])
        vif3, vif4 = merged[ids[3]], merged[ids[4]]
        assert vif3 is not None and vif3.mac == "fa:16:3e:00:00:03"
        assert vif4 is not None and vif4.tag == 7
        assert merged[ids[5]] is None
    finally:
        conn.stop(5)
        for i in range(5):
            ovs.vsctl("--if-exists", "del-port", bridge, f"tapb{i}")


def test_a_vif_replugged_on_a_new_port_in_one_transaction_stays_present(
        ovs: OvsRuntime, fast: bool) -> None:
    bridge = ovs.settings.integration_bridge
    port_id = str(uuid.uuid4())
    ovs.vsctl("add-port", bridge, "tapold", "--", "set", "Interface", "tapold",
              f"external_ids:iface-id={port_id}")
    conn, batches, lock = _recording_idl(ovs, fast)
    try:
        _wait(lambda: bool(batches), "the initial batch")
        ovs.vsctl("del-port", bridge, "tapold", "--", "add-port", bridge, "tapnew", "--",
                  "set", "Interface", "tapnew", f"external_ids:iface-id={port_id}")

        def latest() -> object:
            with lock:
                return next((b.vifs[port_id] for b in reversed(batches)
                             if port_id in b.vifs), None)
        _wait(lambda: getattr(latest(), "name", None) == "tapnew", "the new port")
        time.sleep(0.2)  # nothing may follow that takes it away again
        vif = latest()
        assert vif is not None and getattr(vif, "name", None) == "tapnew"
    finally:
        conn.stop(5)
        for tap in ("tapold", "tapnew"):
            ovs.vsctl("--if-exists", "del-port", bridge, tap)
