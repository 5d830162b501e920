"""br-tun on a host's private Open vSwitch: its ports and its OpenFlow rules.

The tunnel bridge is netdev and fail_mode=secure (an empty table forwards
nothing, so a restarted vswitchd leaks no frame between networks), joined to
the integration bridge by a pair of patch ports, with one `type=vxlan` port per
remote host (OVS userspace tunnelling: the route and the remote VTEP's MAC come
from the host's kernel table, through br-phy, which the operator sets up as for
Neutron with DPDK).

Rules are written in groups through a `FlowTable` of br-tun (the one that
keeps br-int's rules, `vifwire.ovs.flows`): `apply()` replaces or removes the
changed groups in one OpenFlow bundle (atomic: a network is never half
rewritten), `replace_all()` rewrites the whole table in one bundle (the first
write after a start: the previous run's rules keep forwarding until then), and
the table restores every rule when vswitchd restarts or someone flushes it
(fail secure meanwhile). Rules name ports (ovs-ofctl resolves the names), so
they survive a vxlan port getting a new OpenFlow number. All calls are asyncio
subprocesses of ovs-vsctl / ovs-ofctl: no thread meets the loop here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from vifwire.ovs.flows import BASE, FlowTable
from vifwire.ovs.runtime import OvsError, OvsRuntime
from vifwire.settings import OvsSettings

VXLAN_PORT = 4789

Groups = Mapping[str, tuple[str, ...]]


class TunnelBridge:
    def __init__(self, settings: OvsSettings, local_ip: str, *, patch_int: str,
                 patch_tun: str, timeout: float = 10.0) -> None:
        self.settings = settings
        self.name = settings.tunnel_bridge
        self.local_ip = local_ip
        self._patch_int, self._patch_tun = patch_int, patch_tun
        self._timeout = timeout
        runtime = OvsRuntime(settings)
        self._env = runtime.env()
        self._table = FlowTable(runtime, self.name)

    async def setup(self) -> dict[str, str]:
        """Make br-tun and its patch to br-int; returns the vxlan ports found
        (name -> remote address), left by an earlier run."""
        br, integration = self.name, self.settings.integration_bridge
        # Only when something is missing: a vsctl write waits for vswitchd to
        # reconfigure every port, which a restarted agent must not cost its host.
        listed = await self._vsctl("--format=json", "--columns=name", "list", "Interface")
        have = {row[0] for row in json.loads(listed)["data"]}
        if not {br, self._patch_int, self._patch_tun} <= have:
            await self._vsctl(
                "--may-exist", "add-br", br, "--", "set", "Bridge", br,
                f"datapath_type={self.settings.datapath_type}", "fail_mode=secure",
                "--", "--may-exist", "add-port", br, self._patch_int,
                "--", "set", "Interface", self._patch_int, "type=patch",
                f"options:peer={self._patch_tun}",
                "--", "--may-exist", "add-port", integration, self._patch_tun,
                "--", "set", "Interface", self._patch_tun, "type=patch",
                f"options:peer={self._patch_int}")
        found = json.loads(await self._vsctl("--format=json", "--columns=name,options",
                                             "find", "Interface", "type=vxlan"))
        tunnels = {}
        for name, options in found["data"]:
            remote = dict(options[1]).get("remote_ip") if options[0] == "map" else None
            if remote:
                tunnels[name] = remote
        try:
            await asyncio.wait_for(self._table.start(), self._timeout)
        except TimeoutError as exc:
            raise OvsError(f"no OpenFlow connection to {br}") from exc
        return tunnels

    async def close(self) -> None:
        await self._table.stop()

    async def add_tunnel(self, name: str, remote_ip: str) -> None:
        await self._vsctl(
            "--may-exist", "add-port", self.name, name, "--", "set", "Interface", name,
            "type=vxlan", f"options:remote_ip={remote_ip}", f"options:local_ip={self.local_ip}",
            "options:key=flow", f"options:dst_port={VXLAN_PORT}")

    async def remove_tunnel(self, name: str) -> None:
        await self._vsctl("--if-exists", "del-port", self.name, name)

    async def apply(self, changes: Mapping[str, tuple[str, ...] | None]) -> None:
        """Replace each group by its new rules (None or empty: remove it), atomically."""
        if BASE in changes:  # the base rules are written whole, with everything else
            self._table.base(changes[BASE] or ())
            for key, flows in changes.items():
                if key != BASE:
                    self._table.stage(key, flows or ())
            await self._table.restore()
            return
        await self._table.put_many({key: flows or () for key, flows in changes.items()})

    async def replace_all(self, groups: Groups) -> None:
        """Make the bridge hold exactly `groups` (BASE: the base rules), in one bundle."""
        self._table.base(groups.get(BASE, ()))
        for key in self._table.group_keys():
            if key not in groups:
                self._table.stage(key, ())
        for key, flows in groups.items():
            if key != BASE:
                self._table.stage(key, flows)
        await self._table.restore()

    @property
    def restores(self) -> int:
        """How many times every rule was written whole (1 after start, +1 per loss)."""
        return self._table.restores

    async def dump_flows(self) -> str:
        """The bridge's rules as ovs-ofctl prints them (for operators and tests)."""
        return await self._run("ovs-ofctl", "dump-flows", self.name)

    async def _vsctl(self, *args: str) -> str:
        return await self._run("ovs-vsctl", f"--db={self.settings.connection}",
                               f"--timeout={int(self._timeout)}", *args)

    async def _run(self, *argv: str, stdin: str | None = None) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=self._env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError as exc:
            raise OvsError(f"{argv[0]} not found: install openvswitch-switch") from exc
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(None if stdin is None else stdin.encode()), self._timeout + 5)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise OvsError(f"{argv[0]} {argv[1]} timed out") from exc
        if proc.returncode != 0:
            raise OvsError(f"{' '.join(argv[:4])} failed: {err.decode().strip()}")
        return out.decode()
