"""Simulated hosts joined by an underlay, in one test process.

Each host is a network namespace with its own ovsdb-server + ovs-vswitchd
(netdev), a `br-phy` bridge holding the host's end of a veth into the
underlay and the host's tunnel address (198.18.0.N, on the br-phy device, as
OVS userspace tunnelling wants it), and an OVS agent running on the test's loop
in the root namespace (it reaches OVSDB by its unix socket). The underlay is a
namespace with a Linux bridge and the other end of every host's veth, where
`Capture` watches the VXLAN packets each host is sent.

Everything is named with the rig's random id and removed by those names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.peers import sh
from vifwire.agent.service import OvsAgent
from vifwire.bus.base import Bus
from vifwire.ovs.runtime import OvsError, OvsRuntime
from vifwire.settings import OvsSettings, Settings
from vifwire.trace import Tracer

CAPTURE = Path(__file__).with_name("capture.py")


@dataclass
class Host:
    name: str  # the host's name for binding:host_id
    netns: str
    runtime: OvsRuntime
    local_ip: str
    underlay_end: str  # its veth's end in the underlay namespace
    agent: OvsAgent | None = None

    def settings(self) -> Settings:
        return Settings(run_dir=self.runtime.run_dir.parent, host=self.name,
                        local_ip=self.local_ip, agent_heartbeat_s=0.2)

    async def start_agent(self, bus: Bus) -> OvsAgent:
        self.agent = OvsAgent(self.settings(), bus, Tracer("agent", None),
                              ovs=self.runtime.settings, rpc_timeout=5.0)
        await self.agent.start()
        return self.agent

    def flows(self) -> str:
        return self.runtime.ofctl("--names", "dump-flows", self.runtime.settings.tunnel_bridge)


@dataclass
class Underlay:
    rig_id: str
    base: Path
    netns: str = ""
    hosts: list[Host] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.netns = f"vwu{self.rig_id}"

    def create(self) -> None:
        sh("ip", "netns", "add", self.netns)
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        sh("ip", "-n", self.netns, "link", "add", "br-ul", "type", "bridge")
        sh("ip", "-n", self.netns, "link", "set", "br-ul", "up")

    def add_host(self, letter: str) -> Host:
        number = len(self.hosts) + 1
        netns = f"vwh{self.rig_id}{letter}"
        runtime = OvsRuntime(OvsSettings(run_dir=self.base / letter / "ovs"), netns=netns)
        host = Host(f"vwo-{self.rig_id}-{letter}", netns, runtime, f"198.18.0.{number}",
                    f"vwo{self.rig_id}{letter}u")
        self.hosts.append(host)
        runtime.start()  # makes the namespace too
        inner = f"vwo{self.rig_id}{letter}h"
        sh("ip", "link", "add", host.underlay_end, "netns", self.netns, "type", "veth",
           "peer", "name", inner, "netns", netns)
        sh("ip", "-n", self.netns, "link", "set", host.underlay_end, "master", "br-ul", "up")
        sh("ip", "-n", netns, "link", "set", inner, "up")
        runtime.vsctl("--may-exist", "add-br", "br-phy", "--", "set", "Bridge", "br-phy",
                      "datapath_type=netdev", "fail_mode=standalone",
                      "--", "--may-exist", "add-port", "br-phy", inner)
        sh("ip", "-n", netns, "addr", "add", f"{host.local_ip}/24", "dev", "br-phy")
        sh("ip", "-n", netns, "link", "set", "br-phy", "up")
        return host

    async def destroy(self) -> None:
        """Stop the agents, then remove the switches and namespaces (idempotent)."""
        for host in self.hosts:
            if host.agent is not None:
                await host.agent.stop()
                host.agent = None
        for host in self.hosts:
            with contextlib.suppress(OvsError):
                host.runtime.destroy()
            sh("ip", "netns", "del", host.netns, check=False)
        self.hosts.clear()
        sh("ip", "netns", "del", self.netns, check=False)


class Capture:
    """VXLAN packets sent towards each host by the underlay (see capture.py)."""

    def __init__(self, underlay: Underlay) -> None:
        self._underlay = underlay
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.packets: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> Capture:
        ends = [h.underlay_end for h in self._underlay.hosts]
        self._proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self._underlay.netns, sys.executable, str(CAPTURE), *ends,
            stdout=asyncio.subprocess.PIPE)
        assert self._proc.stdout is not None
        ready = await asyncio.wait_for(self._proc.stdout.readline(), 10)
        assert json.loads(ready) == {"ready": True}, ready
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._proc is not None and self._reader is not None
        self._proc.terminate()
        await self._proc.wait()
        await self._reader

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            self.packets.append(json.loads(line))
            self._arrived.set()

    def to(self, host: Host, **match: Any) -> list[dict[str, Any]]:
        """Packets the underlay delivered to `host` matching every `match` item."""
        return [p for p in self.packets if p["iface"] == host.underlay_end and p["dir"] == "out"
                and all(p.get(k) == v for k, v in match.items())]

    async def wait_to(self, host: Host, timeout: float = 10.0,
                      **match: Any) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while not (found := self.to(host, **match)):
                self._arrived.clear()
                await self._arrived.wait()
        return found


async def ping(netns: str, address: str, *, count: int = 1, wait_s: int = 1) -> bool:
    """One ping from inside `netns`, without blocking the loop the agents run on."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns, "ping", "-c", str(count), "-i", "0.2", "-W", str(wait_s),
        address, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0


async def eventually_pings(netns: str, address: str, timeout: float = 15.0) -> bool:
    """Ping until one answer (the first packet to a new VTEP waits for its ARP)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await ping(netns, address):
            return True
    return False
