"""Local VLANs: one per network on this host, 1..4094, held by the ports using it.

A network gets a VLAN when its first port is wired and gives it back when its
last port leaves. On restart the agent reads net_uuid/tag from the Port
other_config it wrote before and passes them in as `hints`: a hinted network
gets its old VLAN back, and other networks avoid hinted VLANs while any free
one remains, so tags stay stable across restarts. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from vifwire.agent.errors import VlansExhausted
from vifwire.agent.model import MAX_VLAN, MIN_VLAN


class LocalVlans:
    def __init__(self, first: int = MIN_VLAN, last: int = MAX_VLAN) -> None:
        self._range = range(first, last + 1)
        self._vlan: dict[str, int] = {}  # network -> vlan
        self._used: dict[int, str] = {}  # vlan -> network
        self._members: dict[str, set[str]] = {}  # network -> port ids
        self._hints: dict[str, int] = {}
        self._hinted: set[int] = set()

    def hint(self, pairs: Iterable[tuple[str, int]]) -> None:
        for network, vlan in pairs:
            if vlan in self._range and network not in self._hints and vlan not in self._hinted:
                self._hints[network] = vlan
                self._hinted.add(vlan)

    def vlan_of(self, network: str) -> int | None:
        return self._vlan.get(network)

    def mapping(self) -> dict[str, int]:
        return dict(self._vlan)

    def acquire(self, network: str, port_id: str) -> int:
        vlan = self._vlan.get(network)
        if vlan is None:
            vlan = self._pick(network)
            self._vlan[network] = vlan
            self._used[vlan] = network
        self._members.setdefault(network, set()).add(port_id)
        return vlan

    def release(self, network: str, port_id: str) -> int | None:
        """Drop the port's hold; returns the VLAN if that freed it."""
        members = self._members.get(network)
        if members is None:
            return None
        members.discard(port_id)
        if members:
            return None
        del self._members[network]
        vlan = self._vlan.pop(network)
        del self._used[vlan]
        return vlan

    def _pick(self, network: str) -> int:
        hinted = self._hints.get(network)
        if hinted is not None and hinted not in self._used:
            return hinted
        for vlan in self._range:
            if vlan not in self._used and vlan not in self._hinted:
                return vlan
        for vlan in self._range:
            if vlan not in self._used:
                return vlan
        raise VlansExhausted(f"no free local VLAN for network {network}")
