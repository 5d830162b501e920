"""The ring of pings waits for a cross-host path to settle, and still fails one
that never answers (pure: VMs whose pings answer as scripted)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from vifwire.compute import connectivity
from vifwire.compute.result import Connectivity, VmRecord


class ScriptedVm:
    """Its pings fail `fails` times, then answer (never, if None)."""

    def __init__(self, fails: int | None) -> None:
        self.fails = fails
        self.pings = 0

    async def ping(self, target_ip: str, count: int = 3, wait_s: int = 1) -> bool:
        self.pings += 1
        return self.fails is not None and self.pings > self.fails


def storm(fails: list[int | None]) -> Any:
    records = [VmRecord(index=i, vm_uuid=f"vm{i}", port_id=f"p{i}", ip=f"10.0.0.{i + 1}",
                        host=f"h{i % 2}") for i in range(len(fails))]
    return SimpleNamespace(
        config=SimpleNamespace(ping_concurrency=4),
        vms={r.port_id: ScriptedVm(f) for r, f in zip(records, fails, strict=True)},
        result=SimpleNamespace(connectivity=Connectivity()),
        count=lambda name: None, records=records)


async def test_a_late_pair_counts_once_it_answers_a_pair_that_never_does_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connectivity, "RING_SETTLE_S", 2.5)
    s = storm([0, 2, None, 0])
    await connectivity._ring(s, s.records)
    conn = s.result.connectivity
    assert (conn.ring_pairs, conn.ring_ok, conn.ring_late) == (4, 3, 1)
    assert conn.ring_failed == [{"from": "p2", "to": "p3", "ip": "10.0.0.4"}]
    assert conn.ring_settled_s is not None and conn.ring_settled_s >= 1.0
    assert not conn.members_ok


async def test_a_ring_that_answers_at_once_is_not_late() -> None:
    s = storm([0, 0, 0])
    await connectivity._ring(s, s.records)
    conn = s.result.connectivity
    assert (conn.ring_ok, conn.ring_late, conn.ring_settled_s, conn.ring_failed) == (
        3, 0, None, [])
