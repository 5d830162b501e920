"""Test peers for the agent: a "server" endpoint on a real LocalBus, and VMs.

`ServerPeer` is the other side of the contract in vifwire.messages, kept tiny:
a dict of ports bound to hosts, and logs of what the agent told it. `Vm` is a
real network namespace with a veth whose host end is plugged into the bridge
the way os-vif does it (external_ids iface-id/attached-mac/iface-status/vm-uuid).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vifwire.bus.base import BusError
from vifwire.messages import AgentState, PortDetails
from vifwire.ovs.runtime import OvsRuntime


def port(port_id: str, network_id: str, host: str, *, mac: str = "fa:16:3e:00:00:01",
         ip: str = "10.0.0.1", admin_state_up: bool = True, status: str = "DOWN",
         segmentation_id: int = 100) -> PortDetails:
    return PortDetails(port_id=port_id, mac_address=mac, network_id=network_id,
                       network_type="vxlan", segmentation_id=segmentation_id,
                       physical_network=None, mtu=1450, admin_state_up=admin_state_up,
                       fixed_ips=[{"subnet_id": "s-" + network_id, "ip_address": ip}],
                       device_owner="compute:nova", device_id=str(uuid.uuid4()), host=host,
                       status=status)


@dataclass
class ServerPeer:
    ports: dict[str, PortDetails] = field(default_factory=dict)
    up_calls: list[list[str]] = field(default_factory=list)
    down_calls: list[list[str]] = field(default_factory=list)
    states: list[AgentState] = field(default_factory=list)
    detail_lookups: list[str] = field(default_factory=list)
    fail_next_up: int = 0  # make that many ports_up calls fail
    groups: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # group -> members
    member_reads: list[str] = field(default_factory=list)

    async def get_host_ports(self, host: str) -> list[PortDetails]:
        return [p for p in self.ports.values() if p["host"] == host]

    async def get_port_details(self, host: str, port_id: str) -> PortDetails | None:
        self.detail_lookups.append(port_id)
        found = self.ports.get(port_id)
        return found if found is not None and found["host"] == host else None

    async def get_group_members(self, host: str, group_id: str) -> dict[str, list[str]]:
        self.member_reads.append(group_id)
        return self.groups.get(group_id, {})

    async def ports_up(self, host: str, port_ids: list[str]) -> list[str]:
        if self.fail_next_up > 0:
            self.fail_next_up -= 1
            raise BusError("server is busy")
        self.up_calls.append(list(port_ids))
        return self._set(port_ids, "ACTIVE")

    async def ports_down(self, host: str, port_ids: list[str]) -> list[str]:
        self.down_calls.append(list(port_ids))
        return self._set(port_ids, "DOWN")

    async def report_state(self, agent: AgentState) -> None:
        self.states.append(agent)

    def _set(self, port_ids: list[str], status: str) -> list[str]:
        done = [p for p in port_ids if p in self.ports]
        for p in done:
            self.ports[p] = {**self.ports[p], "status": status}
        return done

    def reported_up(self) -> set[str]:
        return {p for call in self.up_calls for p in call}

    def reported_down(self) -> set[str]:
        return {p for call in self.down_calls for p in call}


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0,
                   what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Vm:
    """A namespace `vwa-<tag>` whose eth0 is veth peer of `vwa<tag>` on the bridge."""

    runtime: OvsRuntime
    tag: str
    port_id: str
    mac: str
    ip: str
    vm_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    plugged_at: float | None = None

    @property
    def netns(self) -> str:
        return f"vwa-{self.tag}"

    @property
    def device(self) -> str:
        return f"vwa{self.tag}"

    def create(self) -> None:
        sh("ip", "netns", "add", self.netns)
        self.link()

    def unlink(self) -> None:
        """Delete the veth pair (the VIF's device vanishes; its Port row stays)."""
        sh(*self.switch_side, "ip", "link", "del", self.device)

    def link(self) -> None:
        """Create the veth pair: host end `device` by the switch, eth0 in the VM."""
        switch = self.switch_side
        sh(*switch, "ip", "link", "add", self.device, "type", "veth", "peer", "name",
           "vwp" + self.tag, "netns", self.netns)
        inside = ["ip", "netns", "exec", self.netns]
        sh(*inside, "ip", "link", "set", "vwp" + self.tag, "name", "eth0")
        sh(*inside, "ip", "link", "set", "eth0", "address", self.mac)
        sh(*inside, "ip", "addr", "add", f"{self.ip}/24", "dev", "eth0")
        sh(*inside, "ip", "link", "set", "eth0", "up")
        sh(*inside, "ip", "link", "set", "lo", "up")
        sh(*switch, "ip", "link", "set", self.device, "up")

    @property
    def switch_side(self) -> list[str]:
        """Run a command where the switch (and the VIF's host end) lives."""
        return ["ip", "netns", "exec", self.runtime.netns] if self.runtime.netns else []

    def plug(self) -> None:
        bridge = self.runtime.settings.integration_bridge
        self.plugged_at = time.time()
        self.runtime.vsctl(
            "--", "--may-exist", "add-port", bridge, self.device,
            "--", "set", "Interface", self.device,
            f"external_ids:iface-id={self.port_id}", f"external_ids:attached-mac={self.mac}",
            "external_ids:iface-status=active", f"external_ids:vm-uuid={self.vm_uuid}")

    def unplug(self) -> None:
        self.runtime.vsctl("--if-exists", "del-port", self.device)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.unplug()
        sh(*self.switch_side, "ip", "link", "del", self.device, check=False)
        sh("ip", "netns", "del", self.netns, check=False)

    def ping(self, ip: str, count: int = 2) -> bool:
        done = sh("ip", "netns", "exec", self.netns, "ping", "-c", str(count), "-i", "0.2",
                  "-W", "1", ip, check=False)
        return done.returncode == 0

    def dropped(self) -> bool:
        """A drop flow matches what comes in from the VIF."""
        out = self.runtime.ofctl("--names", "dump-flows", self.runtime.settings.integration_bridge)
        names = (f"in_port={self.device} ", f'in_port="{self.device}" ')
        return any("actions=drop" in line and any(n in line for n in names)
                   for line in out.splitlines())

    def tag_in_ovsdb(self) -> int | None:
        out = self.runtime.vsctl("get", "Port", self.device, "tag").strip()
        return None if out in ("[]", "") else int(out)

    def other_config(self) -> str:
        return self.runtime.vsctl("get", "Port", self.device, "other_config").strip()
