"""VifIdl against a real ovsdb-server: what it reports, and what it keeps."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from vifwire.agent.model import VifChanges
from vifwire.agent.monitor import MONITORED, VifIdl
from vifwire.ovs.idl import open_connection
from vifwire.ovs.runtime import OvsRuntime

pytestmark = pytest.mark.ovs


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_deleted_interfaces_are_forgotten(ovs: OvsRuntime) -> None:
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
                           bridge=bridge, sink=sink)
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
