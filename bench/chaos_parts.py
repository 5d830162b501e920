"""The chaos bench's parts: its private stack, the faults, the kept VMs and their ping.

A `Fault` names a process to SIGKILL (`pid`), kills it and brings it back
(`recover`), or says why it cannot run here (`unavailable`); add a kind by adding
one to `FAULTS`. The distributed kinds (agent, server worker, RabbitMQ) run on
tests/distributed's `Cluster`, started by `start_cluster`. The kept pair is
plugged as os-vif does but without a storm's run tag, so no storm's leftover
cleanup takes it, and is removed by `remove_kept_pair` by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
    cluster: Any = None  # tests/distributed's Cluster, for the distributed faults
    kept_first_ping_s: float | None = None  # both vif-plugged -> the pair's first reply

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
    """A process to SIGKILL: `pid` finds it, `kill` kills it, `recover` brings the
    part back as an operator or systemd would; `unavailable` says why it cannot run.
    `distributed`: it needs the distributed stack (`Bench.cluster`)."""

    name: str
    distributed: bool = False

    def unavailable(self, bench: Bench) -> str | None:
        return None

    def pid(self, bench: Bench) -> int | None:
        raise NotImplementedError

    async def kill(self, bench: Bench, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    async def recover(self, bench: Bench, pid: int) -> tuple[int, str]:
        """(0, "") once the part is back; else an exit code and what went wrong."""
        return await bench.acli("up")


@dataclass(frozen=True)
class StackFault(Fault):
    def pid(self, bench: Bench) -> int | None:
        return daemon.stack_pid(bench.settings)


@dataclass(frozen=True)
class OvsFault(Fault):
    def pid(self, bench: Bench) -> int | None:
        return bench.runtime.pid(self.name)


async def _in_thread(step: Callable[[], object]) -> tuple[int, str]:
    try:
        await asyncio.to_thread(step)
    except Exception as exc:  # the cluster's error names the process and its log
        return 1, str(exc)[-400:]
    return 0, ""


@dataclass(frozen=True)
class AgentFault(Fault):
    """`vifwire agent` SIGKILLed, then started again (OVS and the flows stay)."""

    def pid(self, bench: Bench) -> int | None:
        return bench.cluster.agent_pid()

    async def recover(self, bench: Bench, pid: int) -> tuple[int, str]:
        cluster = bench.cluster

        def restart() -> None:
            cluster.agent.wait()
            cluster.start_agent()

        return await _in_thread(restart)


@dataclass(frozen=True)
class WorkerFault(Fault):
    """One `vifwire server` worker SIGKILLed; its supervisor starts another."""

    def pid(self, bench: Bench) -> int | None:
        workers = bench.cluster.worker_pids()
        return random.choice(workers) if workers else None

    async def recover(self, bench: Bench, pid: int) -> tuple[int, str]:
        return await _in_thread(lambda: bench.cluster.wait_worker_restarted(pid))


@dataclass(frozen=True)
class BrokerFault(Fault):
    """The private RabbitMQ node SIGKILLed (its whole process group), then started."""

    def pid(self, bench: Bench) -> int | None:
        return bench.cluster.broker.process.pid if bench.cluster.broker.process else None

    async def kill(self, bench: Bench, pid: int) -> None:
        await asyncio.to_thread(bench.cluster.kill_broker)

    async def recover(self, bench: Bench, pid: int) -> tuple[int, str]:
        return await _in_thread(bench.cluster.start_broker)


FAULTS: dict[str, Fault] = {f.name: f for f in (
    StackFault("stack"), OvsFault("ovsdb-server"), OvsFault("ovs-vswitchd"),
    AgentFault("agent", distributed=True), WorkerFault("server-worker", distributed=True),
    BrokerFault("rabbitmq", distributed=True),
)}


def start_cluster(base: Path, workers: int, logs: Path | None = None) -> Any:
    """The distributed stack of tests/distributed (PostgreSQL database, private
    RabbitMQ node, `vifwire server --workers N`, `vifwire agent`), started."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from distributed.cluster import Cluster  # type: ignore[import-not-found]

    cluster = Cluster(base, workers=workers, verbose=logs is not None, keep_logs=logs)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


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
    # The events say the agent tagged both ports; on a loaded machine vswitchd may
    # apply that a while later (a first run's ping lost its first 1.85 s). Trials
    # start once the pair answers, and the lag is recorded.
    t0 = time.monotonic()
    source: VmSpec = bench.kept[0]["vm"].spec
    while True:
        probe = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", source.namespace, "ping", "-n", "-q", "-c", "1", "-W", "1",
            bench.kept[1]["ip"], stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        if await probe.wait() == 0:
            break
        if time.monotonic() - t0 > 60:
            raise RuntimeError("the kept pair does not ping after 60 s")
    bench.kept_first_ping_s = round(time.monotonic() - t0, 3)


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
    """`ping -i 0.05` from kept VM 0 to kept VM 1, every reply read by its sequence.

    Lost = requests with no reply, the last one excepted: ping's own total counts
    the request still in flight when it is stopped as lost, which on a loaded
    machine (a reply a few ms late) made a clean run report 1 lost now and then.
    """

    def __init__(self, bench: Bench) -> None:
        source: VmSpec = bench.kept[0]["vm"].spec
        self.argv = ["ip", "netns", "exec", source.namespace, "ping", "-n", "-D", "-i", "0.05",
                     "-W", "1", bench.kept[1]["ip"]]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)

    async def stop(self) -> dict[str, Any]:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        out, _ = await self.proc.communicate()
        found = re.search(rb"(\d+) packets transmitted", out)
        sent = int(found[1]) if found else 0
        # -D: "[unix time] 64 bytes from ...: icmp_seq=N ttl=..."
        answered = {int(seq): float(t) for t, seq in re.findall(
            rb"\[(\d+\.\d+)\][^\n]*icmp_seq=(\d+) ttl=", out)}
        missing = [seq for seq in range(1, sent) if seq not in answered]
        # when each lost request went: just after the last answered one before it
        before = [max((answered[s] for s in answered if s < seq), default=0.0)
                  for seq in missing[:20]]
        return {"sent": sent, "received": len(answered), "lost": len(missing),
                "in_flight_at_stop": int(sent > 0 and sent not in answered),
                "lost_after": [round(t, 3) for t in before]}
