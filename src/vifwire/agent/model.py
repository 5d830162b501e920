"""Values the agent passes around, and its constants.

What OVSDB shows of one VIF (`Vif`, `VifChanges`) and what the agent writes to a
Port (`PortWrite`) are `vifwire.ovs` values, re-exported here: they are pure data,
so the planner uses them without loading ovsdbapp.
"""

from __future__ import annotations

from vifwire.ovs.model import PortWrite, Vif, VifChanges

__all__ = ["AGENT_BINARY", "AGENT_TYPE", "DEAD_VLAN", "MAX_VLAN", "MIN_VLAN", "NETWORK_KEYS",
           "PortWrite", "Vif", "VifChanges"]

DEAD_VLAN = 4095
MIN_VLAN = 1
MAX_VLAN = 4094

AGENT_TYPE = "Open vSwitch agent"
AGENT_BINARY = "neutron-openvswitch-agent"

# Port.other_config keys Neutron's agent keeps for a wired port.
NETWORK_KEYS = ("net_uuid", "network_type", "physical_network", "segmentation_id", "tag")
