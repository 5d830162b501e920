"""A distributed vifwire on one machine: `vifwire cluster up/down/status` (see rig)."""

from vifwire.cluster.state import ClusterError, RigState, find

__all__ = ["ClusterError", "RigState", "find"]
