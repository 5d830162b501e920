"""The compute package's one base exception and its few refinements.

Messages are one line and say what to do or what was missing, because the CLI
prints them as they are.
"""

from __future__ import annotations


class ComputeError(Exception):
    """Base of every error the compute emulator raises."""


class NeutronClientError(ComputeError):
    """Neutron answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind  # NeutronError "type", e.g. "PortNotFound"


class NotFound(NeutronClientError):
    """Neutron answered 404."""


class EventTimeout(ComputeError):
    """An awaited Nova external event never arrived."""


class OvsUnavailable(ComputeError):
    """The integration bridge's OVSDB could not be reached or refused a change."""


class VmError(ComputeError):
    """A namespace or veth could not be created, configured or removed."""
