"""Values the agent passes around: what OVSDB shows of one VIF, and constants.

`Vif` is a frozen snapshot taken in the OVSDB thread; the event loop only ever
sees these values, never live IDL rows (which the OVSDB thread mutates).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEAD_VLAN = 4095
MIN_VLAN = 1
MAX_VLAN = 4094

AGENT_TYPE = "Open vSwitch agent"
AGENT_BINARY = "neutron-openvswitch-agent"

# Port.other_config keys Neutron's agent keeps for a wired port.
NETWORK_KEYS = ("net_uuid", "network_type", "physical_network", "segmentation_id", "tag")


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


@dataclass(frozen=True)
class VifChanges:
    """One batch of observations from the OVSDB thread, in arrival order.

    `vifs` maps port id -> its VIF now, or None when it left the bridge. An
    `initial` batch is the complete picture right after (re)connecting.
    """

    vifs: Mapping[str, Vif | None]
    initial: bool = False
