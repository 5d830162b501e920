"""The compute emulator: plays Nova + os-vif + libvirt for a boot storm.

Modules, from the edges in:

* `neutron`     -- async client for the Neutron v2.0 REST API (what Nova calls).
* `nova_events` -- the storm's event book, and the Nova endpoint process it runs.
* `nova_server` -- that process: a Nova-compatible `os-server-external-events`.
* `namespaces`  -- network namespaces entered per thread (setns), never forking.
* `vm`          -- a "VM": a network namespace holding one end of a veth pair.
* `plug`        -- os-vif's OVS plug: the tap's port in one OVSDB transaction.
* `state`       -- the run state file and the cleanup of crashed runs.
* `storm`       -- the boot storm that ties them together.

Every failure is a `ComputeError` (see `errors`).
"""

from vifwire.compute.errors import ComputeError

__all__ = ["ComputeError"]
