"""The chaos bench's parts: its private stack, the faults, the kept VMs and their ping.

A `Fault` names a process to SIGKILL (`pid`) or says why it cannot run here
(`unavailable`); add a kind by adding one to `FAULTS`. The kept pair is
plugged as os-vif does but without a storm's run tag, so no storm's leftover
cleanup takes it, and is removed by `remove_kept_pair` by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from vifwire.cli import daemon
from vifwire.compute.neutron import NeutronClient
from vifwire.compute.nova_events import VIF_PLUGGED, EventBook, NovaEndpoint
from vifwire.compute.vm import Vm, VmSpec, spec_from_port
from vifwire.nova_token import token_path
from vifwire.ovs.runtime import OvsRuntime, host_runtime
from vifwire.settings import Settings

VIF_UNPLUGGED = "network-vif-unplugged"
DEAD_VLAN_DROP = re.compile(r"priority=65535,dl_vlan=4095 actions=drop")
NETWORK = "chaos"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Bench:
    """One chaos run's private stack and the kept VMs."""

    settings: Settings
    run_id: str
    cli_options: list[str]
    kept: list[dict[str, Any]] = field(default_factory=list)  # port, vm uuid, Vm
    network_id: str = ""

    @property
    def runtime(self) -> OvsRuntime:
        return host_runtime(self.settings)

    @property
    def ns_prefix(self) -> str:
        return f"vwx{self.run_id}-"

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vifwire.cli.main", *self.cli_options,
                               *args], capture_output=True, text=True, timeout=timeout,
                              check=False)

    async def acli(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vifwire.cli.main", *self.cli_options, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace").strip()[-400:]

    def bridge_ports(self) -> set[str]:
        bridge = self.settings.ovs.integration_bridge
        return set(self.runtime.vsctl("list-ports", bridge).split())

    def dead_vlan_drop_present(self) -> bool:
        try:
            flows = self.runtime.ofctl("dump-flows", self.settings.ovs.integration_bridge)
        except Exception:  # vswitchd not back: no flows at all
            return False
        return bool(DEAD_VLAN_DROP.search(flows.replace(", ", ",")))


# faults


@dataclass(frozen=True)
class Fault:
    """A process to SIGKILL; `pid` finds it, `unavailable` says why it cannot run."""

    name: str

    def unavailable(self, bench: Bench) -> str | None:
        return None

    def pid(self, bench: Bench) -> int | None:
        raise NotImplementedError


@dataclass(frozen=True)
class StackFault(Fault):
    def pid(self, bench: Bench) -> int | None:
        return daemon.stack_pid(bench.settings)


@dataclass(frozen=True)
class OvsFault(Fault):
    def pid(self, bench: Bench) -> int | None:
        return bench.runtime.pid(self.name)


@dataclass(frozen=True)
class DistributedFault(Fault):
    """Needs the distributed mode (separate `vifwire agent`, server workers, RabbitMQ)."""

    needs: str = ""

    def unavailable(self, bench: Bench) -> str | None:
        probe = bench.cli("agent", "--help", timeout=30)
        if probe.returncode != 0:
            return (f"skipped: needs {self.needs}; this build has no `vifwire agent` "
                    "command (distributed mode)")
        return (f"skipped: needs {self.needs}; `vifwire agent` exists but this bench does "
                "not start a distributed stack yet (add it in Bench.start)")


FAULTS: dict[str, Fault] = {f.name: f for f in (
    StackFault("stack"), OvsFault("ovsdb-server"), OvsFault("ovs-vswitchd"),
    DistributedFault("agent", needs="an agent process apart from the server"),
    DistributedFault("server-worker", needs="several API/RPC worker processes"),
    DistributedFault("rabbitmq", needs="a private RabbitMQ bus (bus_url amqp://)"),
)}


# the kept pair and its continuous ping


async def boot_kept_pair(bench: Bench) -> None:
    """Two VMs plugged as os-vif does (without a storm's run tag, so no storm's
    cleanup takes them), wired by the agent, then left running all along."""
    book = EventBook()
    nova = NovaEndpoint(book, bench.settings.nova_url, token_file=token_path(
        bench.settings.run_dir))
    await nova.start()
    try:
        async with NeutronClient(bench.settings.api_url) as neutron:
            network = await neutron.find_network(NETWORK)
            if network is None:
                network = await neutron.create_network(NETWORK)
                await neutron.create_subnet(network["id"], "10.0.0.0/24")
            bench.network_id = network["id"]
            subnets = {s["id"]: s for s in await neutron.list_subnets(network["id"])}
            for i in range(2):
                vm_uuid = str(uuid.uuid4())
                book.expect_server(vm_uuid)
                port = await neutron.create_port(network["id"], device_id=vm_uuid,
                                                 name=f"chaos-kept-{i}")
                port = await neutron.bind_port(port["id"], vm_uuid, bench.settings.host)
                spec = spec_from_port(port, subnets, 1500, bench.ns_prefix + "k",
                                      bench.settings.ovs_netns)
                vm = Vm(spec)
                await vm.create()
                bench.kept.append({"port_id": port["id"], "vm_uuid": vm_uuid, "vm": vm,
                                   "ip": spec.ip})
                bench.runtime.vsctl(
                    "--", "--may-exist", "add-port", bench.settings.ovs.integration_bridge,
                    spec.tap, "--", "set", "Interface", spec.tap,
                    f"external_ids:iface-id={port['id']}", "external_ids:iface-status=active",
                    f"external_ids:attached-mac={spec.mac}", f"external_ids:vm-uuid={vm_uuid}")
            for kept in bench.kept:
                await book.wait(VIF_PLUGGED, kept["port_id"], 60)
    finally:
        await nova.stop()


async def remove_kept_pair(bench: Bench) -> None:
    async with NeutronClient(bench.settings.api_url) as neutron:
        for kept in bench.kept:
            vm: Vm = kept["vm"]
            with contextlib.suppress(Exception):
                bench.runtime.vsctl("--if-exists", "del-port",
                                    bench.settings.ovs.integration_bridge, vm.tap)
            with contextlib.suppress(Exception):
                await vm.delete()
            with contextlib.suppress(Exception):
                await neutron.delete_port(kept["port_id"])


class ContinuousPing:
    """`ping -i 0.05` from kept VM 0 to kept VM 1; sent and received counted at stop."""

    def __init__(self, bench: Bench) -> None:
        source: VmSpec = bench.kept[0]["vm"].spec
        self.argv = ["ip", "netns", "exec", source.namespace, "ping", "-n", "-q", "-i", "0.05",
                     "-W", "1", bench.kept[1]["ip"]]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)

    async def stop(self) -> dict[str, int]:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        out, _ = await self.proc.communicate()
        found = re.search(rb"(\d+) packets transmitted, (\d+) received", out)
        sent, received = (int(found[1]), int(found[2])) if found else (0, 0)
        return {"sent": sent, "received": received, "lost": sent - received}
