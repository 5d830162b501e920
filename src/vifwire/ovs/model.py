"""Values that cross the `vifwire.ovs` boundary, and its errors.

Pure data, no ovsdbapp: the agent's planner imports these without loading the
OVSDB library. `Vif` is a frozen snapshot taken in the OVSDB thread; the event
loop only ever sees these values, never live IDL rows (which that thread
mutates).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vifwire.ovs.runtime import OvsError


class OvsUnavailable(OvsError):
    """OVSDB or vswitchd could not be reached or did not answer in time."""


class OvsWriteFailed(OvsError):
    """An OVSDB transaction or a flow change failed."""


@dataclass(frozen=True)
class Vif:
    """An interface on the integration bridge that os-vif marked with iface-id."""

    port_id: str  # external_ids:iface-id, the Neutron port id
    name: str  # Interface.name == Port.name
    mac: str | None = None  # external_ids:attached-mac
    tag: int | None = None  # Port.tag
    other_config: Mapping[str, str] = field(default_factory=dict)  # Port.other_config
    vm_uuid: str | None = None
    iface_status: str | None = None
    # vswitchd has no usable device (veth, tap) for it: Interface.ofport -1 or
    # admin_state down. A Port row without a device carries no traffic: not up.
    lost: bool = False
    # Interface.ofport once vswitchd has numbered the device (None before: a new
    # VIF's row is in OVSDB before vswitchd has added it). OpenFlow rules that
    # match the VIF's traffic (its firewall's) wait for it.
    ofport: int | None = None


@dataclass(frozen=True)
class VifChanges:
    """One batch of observations from the OVSDB thread, in arrival order.

    `vifs` maps port id -> its VIF now, or None when it left the bridge. An
    `initial` batch is the complete picture right after (re)connecting.
    """

    vifs: Mapping[str, Vif | None]
    initial: bool = False


@dataclass(frozen=True)
class PortWrite:
    """Set Port.tag and merge/remove Port.other_config keys of the Port `name`."""

    name: str
    tag: int
    other_config: dict[str, str] = field(default_factory=dict)
    clear_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Flow:
    """One OpenFlow rule of the agent, in ovs-ofctl syntax, minus the cookie.

    `cookie` (64 bits) names who owns the rule: the agent removes and restores
    its flows by cookie and leaves anyone else's alone.
    """

    cookie: int
    spec: str  # e.g. "priority=2,in_port=tap1,actions=drop"

    def line(self) -> str:
        return f"cookie={self.cookie:#x},{self.spec}"

    def delete_line(self) -> str:
        """The strict delete of this one rule: its table, priority and match, and
        only with its cookie (so never someone else's rule)."""
        match, _, _ = self.spec.partition(",actions=")
        table = "" if match.startswith("table=") or ",table=" in match else "table=0,"
        return f"delete_strict cookie={self.cookie:#x}/-1,{table}{match}"
