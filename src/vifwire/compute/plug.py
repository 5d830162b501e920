"""os-vif's OVS plug, on ovsdbapp.

os-vif plugs a guest's tap into br-int with the equivalent of

    ovs-vsctl -- --may-exist add-port br-int tapX \\
              -- set Interface tapX external_ids:iface-id=<port> \\
                 external_ids:iface-status=active external_ids:attached-mac=<mac> \\
                 external_ids:vm-uuid=<instance>

in one transaction; the OVS agent notices the new Interface and wires it. Here
the same two commands go through one ovsdbapp transaction (`check_error=True`),
plus `external_ids:vifwire-run=<run id>` so ports of a crashed run can be found
and removed later.

Isolated at plug, as os-vif's `isolate_vif` option does for the ML2/OVS agent:
a new Port is added with `tag=4095`, the agent's dead VLAN, in the same
transaction. Untagged, NORMAL would switch the new VIF as a trunk (every VLAN)
until the agent's tag arrived; the agent re-tags it with its network's local
VLAN. A Port that already exists (a re-plug) keeps its tag: resetting a wired
port to 4095 would cut its traffic until the agent noticed (os-vif fixed the
same bug on nova-compute restarts).

Design: one `OvsPlugger` per storm holds one IDL connection (ovsdbapp runs it on
its own thread), monitoring only the columns the plug reads. Transactions block
until ovs-vswitchd has applied them, so they run in the plugger's own small
thread pool: never the loop's default executor, which an agent in the same
process may be using at the same moment. The plug time is when the connection
thread starts sending the transaction to ovsdb-server (ovsdbapp's `start_time`),
before the server has committed it, so the measured plug -> event latency stays
conservative; time a plug waited behind other plugs in this process's own queue
is recorded apart (`queued_ms` on the trace event), not counted as latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vifwire.compute.errors import OvsUnavailable
from vifwire.compute.vm import tap_name
from vifwire.ovs.idl import open_connection, open_vswitch_api
from vifwire.ovs.runtime import OvsError
from vifwire.settings import OvsSettings
from vifwire.trace import NullTracer, Stage, Tracer

RUN_KEY = "vifwire-run"
# Neutron's dead VLAN: NORMAL switches the port with nothing the agent wired.
DEAD_VLAN = 4095
# Only what add-port/del-port/db-set and the vswitchd reload wait read: the IDL
# then skips the statistics vswitchd keeps writing into every Interface row.
MONITORED = {
    "Open_vSwitch": ["bridges", "cur_cfg", "next_cfg"],
    "Bridge": ["name", "ports"],
    "Port": ["name", "interfaces", "tag"],
    "Interface": ["name", "external_ids", "ofport", "mtu_request"],
}


def os_vif_external_ids(port_id: str, mac: str, vm_uuid: str, run_id: str) -> dict[str, str]:
    return {"iface-id": port_id, "iface-status": "active", "attached-mac": mac,
            "vm-uuid": vm_uuid, RUN_KEY: run_id}


class OvsPlugger:
    def __init__(self, ovs: OvsSettings, run_id: str, tracer: Tracer | None = None,
                 timeout: float = 60.0, workers: int = 4) -> None:
        self.ovs = ovs
        self.bridge = ovs.integration_bridge
        self.run_id = run_id
        self.tracer = tracer or NullTracer()
        self.timeout = timeout
        self.workers = workers
        self._api: Any = None
        self._executor: ThreadPoolExecutor | None = None

    async def _call(self, func: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="os-vif-plug")
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    # connection

    def _connect(self) -> Any:
        try:
            # A private API class per connection (see vifwire.ovs.idl), so storms
            # or an agent in the same process never share one.
            api = open_vswitch_api(open_connection(self.ovs.connection, MONITORED,
                                                   timeout=self.timeout))
        except OvsError as exc:
            raise OvsUnavailable(str(exc)) from exc
        try:
            exists = api.br_exists(self.bridge).execute(check_error=True)
        except Exception as exc:
            api.ovsdb_connection.stop()
            raise OvsUnavailable(f"cannot look up {self.bridge} in {self.ovs.connection}: "
                                 f"{exc}") from exc
        if not exists:
            api.ovsdb_connection.stop()
            raise OvsUnavailable(f"integration bridge {self.bridge} does not exist in "
                                 f"{self.ovs.connection}")
        return api

    async def start(self) -> None:
        if self._api is None:
            try:
                self._api = await self._call(self._connect)
            except BaseException:
                await self.stop()
                raise

    async def stop(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            await self._call(api.ovsdb_connection.stop, 5)
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    async def __aenter__(self) -> OvsPlugger:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api(self) -> Any:
        if self._api is None:
            raise OvsUnavailable("OvsPlugger used before start()")
        return self._api

    # the plug

    def _plug_sync(self, tap: str, external_ids: dict[str, str],
                   mtu: int | None) -> tuple[float, float]:
        api = self.api
        fresh = not self._has_port(tap)
        txn = api.create_transaction(check_error=True)
        txn.add(api.add_port(self.bridge, tap, may_exist=True))
        if fresh:
            txn.add(api.db_set("Port", tap, ("tag", DEAD_VLAN)))
        columns: list[tuple[str, Any]] = [("external_ids", external_ids)]
        if mtu:
            columns.append(("mtu_request", mtu))
        txn.add(api.db_set("Interface", tap, *columns))
        t_submit = time.time()
        try:
            txn.commit()
        except Exception as exc:
            raise OvsUnavailable(f"cannot plug {tap} into {self.bridge}: {exc}") from exc
        # ovsdbapp's connection thread runs one transaction at a time and, like
        # ovs-vsctl, holds each until vswitchd applied it, so concurrent plugs queue
        # here first. The VIF goes to OVSDB when that thread starts this commit:
        # ovsdbapp stamps that moment as `start_time`, just before sending it.
        t_plug: float = getattr(txn, "start_time", None) or t_submit
        return t_plug, t_submit

    def _has_port(self, tap: str) -> bool:
        api = self.api
        # The connection thread mutates the IDL's rows under this lock; a lookup
        # walks them.
        with api.ovsdb_connection.lock:
            return api.lookup("Port", tap, default=None) is not None

    async def plug(self, port_id: str, mac: str, vm_uuid: str, mtu: int | None = None) -> float:
        """Add tap<port_id[:11]> to the bridge as os-vif does; returns the plug time."""
        ids = os_vif_external_ids(port_id, mac, vm_uuid, self.run_id)
        t_plug, t_submit = await self._call(self._plug_sync, tap_name(port_id), ids, mtu)
        self.tracer.mark(Stage.PLUGGED, port_id, t=t_plug, device=tap_name(port_id),
                         queued_ms=round((t_plug - t_submit) * 1000, 3))
        return float(t_plug)

    def _unplug_sync(self, tap: str) -> None:
        try:
            self.api.del_port(tap, bridge=self.bridge, if_exists=True).execute(check_error=True)
        except Exception as exc:
            raise OvsUnavailable(f"cannot unplug {tap} from {self.bridge}: {exc}") from exc

    async def unplug(self, tap: str) -> None:
        await self._call(self._unplug_sync, tap)

    def _tagged_sync(self) -> dict[str, str]:
        try:
            rows = self.api.db_list("Interface", columns=["name", "external_ids"]).execute(
                check_error=True)
        except Exception as exc:
            raise OvsUnavailable(f"cannot list interfaces of {self.ovs.connection}: {exc}") \
                from exc
        return {r["name"]: r["external_ids"][RUN_KEY] for r in rows
                if RUN_KEY in r["external_ids"]}

    async def run_interfaces(self) -> dict[str, str]:
        """Interfaces plugged by any vifwire run: name -> run id."""
        tagged: dict[str, str] = await self._call(self._tagged_sync)
        return tagged
