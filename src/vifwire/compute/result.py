"""What a boot storm measured: per-VM records and the summary `--json` prints.

Pure data and arithmetic; no I/O. Latency is `t_event - t_plug`: from just
before the OVSDB plug transaction was committed to Nova's receipt of
`network-vif-plugged`, both on this host's wall clock.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class VmRecord:
    index: int
    vm_uuid: str
    port_id: str = ""
    ip: str = ""
    mac: str = ""
    namespace: str = ""
    tap: str = ""
    probe: bool = False  # the isolation probe, not one of the storm's VMs
    host: str = ""  # the compute host it was booted on (its port's binding:host_id)
    t_start: float = 0.0
    t_port: float = 0.0  # port created
    t_bound: float = 0.0  # binding update answered
    t_vm: float = 0.0  # namespace and veth ready
    t_plug: float = 0.0  # just before the OVSDB transaction
    t_event: float = 0.0  # network-vif-plugged received
    stage: str = "start"  # the last stage reached
    error: str | None = None

    @property
    def plugged(self) -> bool:
        return self.t_event > 0 and self.error is None

    @property
    def latency_ms(self) -> float | None:
        return (self.t_event - self.t_plug) * 1000 if self.t_event and self.t_plug else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "latency_ms": self.latency_ms}


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)
    return {"min": ordered[0], "p50": percentile(ordered, 50), "p90": percentile(ordered, 90),
            "p99": percentile(ordered, 99), "max": ordered[-1],
            "mean": sum(ordered) / len(ordered)}


@dataclass
class Connectivity:
    checked: bool = False
    ring_pairs: int = 0
    ring_ok: int = 0
    ring_failed: list[dict[str, str]] = field(default_factory=list)
    cross_host_ok: int = 0  # ring pairs on two different hosts that pinged
    # Pairs that answered only on a retry (`connectivity.RING_SETTLE_S`): the path
    # was not ready when their VMs were (l2population and group members reach
    # the other hosts after a port is up), and when the last of them answered.
    ring_late: int = 0
    ring_settled_s: float | None = None
    probe_ip: str | None = None
    probe_wired: bool = False
    probe_reachable: bool | None = None
    detail: str | None = None
    # Port security (`vifwire.compute.connectivity`): the outsider VM's address, the
    # directions in which it got an answer (none when the groups are enforced).
    port_security: bool = False
    outsider_ip: str | None = None
    outsider_answered: list[str] = field(default_factory=list)
    outsider_refused: bool | None = None  # None: not measured

    @property
    def isolation_ok(self) -> bool:
        return self.probe_wired and self.probe_reachable is False

    @property
    def members_ok(self) -> bool:
        return self.ring_pairs > 0 and self.ring_ok == self.ring_pairs

    @property
    def ok(self) -> bool:
        return (self.checked and self.members_ok and self.isolation_ok
                and (not self.port_security or self.outsider_refused is True))

    def port_security_summary(self) -> dict[str, Any] | None:
        if not self.port_security:
            return None
        return {"members_ok": self.members_ok, "outsider_refused": self.outsider_refused,
                "outsider_ip": self.outsider_ip, "outsider_answered": self.outsider_answered}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "isolation_ok": self.isolation_ok, "ok": self.ok}


@dataclass
class StormResult:
    run_id: str
    network_id: str
    count: int
    records: list[VmRecord] = field(default_factory=list)
    connectivity: Connectivity = field(default_factory=Connectivity)
    phases_s: dict[str, float] = field(default_factory=dict)
    cleaned: dict[str, list[str]] = field(default_factory=dict)
    teardown_errors: list[str] = field(default_factory=list)
    error: str | None = None  # one line, e.g. the ports that never got their event
    kept: bool = False
    neutron_retries: int = 0  # Neutron calls sent again (Neutron unreachable or 503)
    # ARP table limits this storm raised (vifwire.compute.neighbours): name -> [before, after]
    neighbour_limits: dict[str, list[int]] = field(default_factory=dict)

    @property
    def vms(self) -> list[VmRecord]:
        return [r for r in self.records if not r.probe]

    @property
    def plugged(self) -> int:
        return sum(r.plugged for r in self.vms)

    @property
    def hosts(self) -> dict[str, int]:
        """Host name -> VMs booted (wired) there."""
        booted: dict[str, int] = {}
        for record in self.vms:
            if record.host:
                booted[record.host] = booted.get(record.host, 0) + record.plugged
        return booted

    @property
    def latencies_ms(self) -> list[float]:
        return [r.latency_ms for r in self.vms if r.plugged and r.latency_ms is not None]

    @property
    def ok(self) -> bool:
        return (self.error is None and self.plugged == self.count
                and (self.connectivity.ok or not self.connectivity.checked))

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "network_id": self.network_id,
            "vms": self.count,
            "plugged": self.plugged,
            "hosts": self.hosts,
            "cross_host_pairs": self.connectivity.cross_host_ok,
            "latency_ms": latency_summary(self.latencies_ms),
            "connectivity_ok": self.connectivity.ok,
            "connectivity": self.connectivity.to_dict(),
            "port_security": self.connectivity.port_security_summary(),
            "ok": self.ok,
            "error": self.error,
            "failures": [{"index": r.index, "port_id": r.port_id, "stage": r.stage,
                          "error": r.error, "probe": r.probe}
                         for r in self.records if r.error],
            "phases_s": self.phases_s,
            "cleaned_leftovers": self.cleaned,
            "teardown_errors": self.teardown_errors,
            "kept": self.kept,
            "neutron_retries": self.neutron_retries,
            "neighbour_limits_raised": self.neighbour_limits,
            "records": [r.to_dict() for r in self.records],
        }
