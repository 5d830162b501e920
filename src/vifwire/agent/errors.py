"""The agent's one exception family: callers catch `AgentError`, nothing broader."""

from __future__ import annotations


class AgentError(Exception):
    """The OVS agent cannot do what was asked; the message is one line for a human."""


class OvsUnavailable(AgentError):
    """OVSDB or vswitchd could not be reached or did not answer in time."""


class VlansExhausted(AgentError):
    """Every local VLAN (1..4094) is taken by some network."""
