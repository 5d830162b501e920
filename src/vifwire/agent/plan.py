"""What to do about one port: a pure function of desired and observed state.

Desired state is what the server said (`details`, and whether we know it:
`lookup`); observed state is the port's VIF on the integration bridge. The
plan never does I/O; the service executes it (fetch details, write the Port,
report up or down) and plans again until nothing is left to do.

Rules (Neutron's OVS agent semantics):
- no VIF: report down if the port was up; hold no VLAN;
- VIF without a device (lost): report down if the port was up; keep its VLAN
  and tag, so it is wired again the moment the device returns;
- VIF, details never asked for: fetch them from the server;
- VIF, server knows no such port here: dead VLAN, strip network keys;
- VIF, admin down: dead VLAN (keeping the network keys), report down;
- VIF, admin up: the network's local VLAN and network keys, report up.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from vifwire.agent.model import DEAD_VLAN, NETWORK_KEYS, PortWrite, Vif
from vifwire.messages import PortDetails

Report = Literal["up", "down"]


class Lookup(StrEnum):
    UNKNOWN = "unknown"  # never heard of it from the server
    KNOWN = "known"  # details from a port_bound cast, the full sync or a lookup
    ABSENT = "absent"  # the server has no such port bound to this host


@dataclass(frozen=True)
class PortView:
    port_id: str
    vif: Vif | None
    details: PortDetails | None
    lookup: Lookup
    local_vlan: int | None  # the VLAN this port's network holds, if any
    was_up: bool  # reported up by us, or ACTIVE according to the server


@dataclass(frozen=True)
class Action:
    fetch: bool = False
    write: PortWrite | None = None
    report: Report | None = None
    wired: bool = False  # the VIF carries its network's VLAN once `write` is done

    @property
    def idle(self) -> bool:
        return not self.fetch and self.write is None and self.report is None


def network_to_hold(view: PortView) -> str | None:
    """The network whose local VLAN this port needs, if any."""
    if view.vif is not None and view.lookup is Lookup.KNOWN and view.details is not None:
        return view.details["network_id"]
    return None


def network_config(details: PortDetails, vlan: int) -> dict[str, str]:
    """Port.other_config as Neutron's agent writes it (all strings)."""
    segmentation = details["segmentation_id"]
    return {
        "net_uuid": details["network_id"],
        "network_type": details["network_type"],
        "physical_network": details["physical_network"] or "None",
        "segmentation_id": "None" if segmentation is None else str(segmentation),
        "tag": str(vlan),
    }


def plan(view: PortView) -> Action:
    vif = view.vif
    if vif is None or vif.lost:
        return Action(report="down" if view.was_up else None)
    if view.lookup is Lookup.UNKNOWN:
        return Action(fetch=True)
    details = view.details
    if view.lookup is Lookup.ABSENT or details is None:
        stale = [k for k in NETWORK_KEYS if k in vif.other_config]
        if vif.tag == DEAD_VLAN and not stale:
            return Action()
        return Action(write=PortWrite(vif.name, DEAD_VLAN, {}, tuple(stale)))
    if view.local_vlan is None:  # a network to hold but no VLAN: nothing safe to do
        return Action()
    config = network_config(details, view.local_vlan)
    tag = view.local_vlan if details["admin_state_up"] else DEAD_VLAN
    report: Report = "up" if details["admin_state_up"] else "down"
    if vif.tag == tag and all(vif.other_config.get(k) == v for k, v in config.items()):
        return Action(report=report, wired=tag != DEAD_VLAN)
    return Action(write=PortWrite(vif.name, tag, config), report=report,
                  wired=tag != DEAD_VLAN)
