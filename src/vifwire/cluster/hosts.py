"""Simulated hypervisors: one network namespace per host, joined by an underlay.

Host n of rig <id> is the namespace `vwh-<id>-<n>` with its own ovsdb-server +
ovs-vswitchd (netdev datapath, under `<rig dir>/hosts/<name>/ovs`, started
inside the namespace so its tap devices are the host's own). The underlay is
one Linux bridge `br-ul` in the namespace `vwu-<id>`, a veth per host
(`vwu<id>h<n>` on the bridge, `vwh<id>h<n>` in the host), the host end a port
of the host's netdev bridge `br-phy`, and the host's tunnel address
(`local_ip`, 198.18.0.0/15, the benchmarking range) on the `br-phy` device:
OVS's userspace tunnelling routes and ARPs through the host namespace's kernel
table, as on a hypervisor whose NIC is in an OVS bridge. Nothing here is
needed on a real host; the agent only gets `local_ip` and its OVSDB socket.

Names are recorded in the state file before they are created (see
`vifwire.cluster.state`); `remove_hosts` deletes exactly the recorded ones.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vifwire.cluster.state import ClusterError, Host, Process, RigState, stop
from vifwire.ovs.runtime import DAEMONS, OvsError, OvsRuntime
from vifwire.settings import OvsSettings

UNDERLAY_CIDR = "198.18.0.0/15"
UNDERLAY_BRIDGE = "br-ul"
PHYSICAL_BRIDGE = "br-phy"


def ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip", *(["-n", netns] if netns else []), "link", "show", "dev", name]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def add_netns(state: RigState, name: str) -> None:
    state.netns.append(name)
    state.save()  # named before it exists
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def plan_hosts(state: RigState, count: int) -> None:
    """Name every host, namespace and link of the rig, and save them, before any exists."""
    network = ipaddress.ip_network(UNDERLAY_CIDR)
    state.underlay_netns, state.underlay_cidr = f"vwu-{state.id}", UNDERLAY_CIDR
    for n in range(1, count + 1):
        name = f"vwh-{state.id}-{n}"
        state.hosts.append(Host(
            name=name, netns=name, local_ip=str(network.network_address + n),
            run_dir=str(Path(state.dir) / "hosts" / name),
            underlay_link=f"vwu{state.id}h{n}", host_link=f"vwh{state.id}h{n}"))
    # A veth pair is made in one call; if that call dies halfway its ends can be
    # left in the root namespace, so `down` looks for them there by these names.
    state.links = [link for h in state.hosts for link in (h.underlay_link, h.host_link)]
    state.save()


def ovs_runtime(host: Host) -> OvsRuntime:
    return OvsRuntime(OvsSettings(run_dir=host.ovs_dir), netns=host.netns)


def create_hosts(state: RigState, workers: int = 4) -> None:
    """The underlay, then every host (namespace, OVS, br-phy, address) in parallel."""
    add_netns(state, state.underlay_netns)
    ip("link", "add", UNDERLAY_BRIDGE, "type", "bridge", netns=state.underlay_netns)
    ip("link", "set", UNDERLAY_BRIDGE, "up", netns=state.underlay_netns)
    for host in state.hosts:
        add_netns(state, host.netns)
    lock = threading.Lock()
    with ThreadPoolExecutor(workers, thread_name_prefix="cluster-host") as pool:
        for done in [pool.submit(_create_host, state, host, lock) for host in state.hosts]:
            done.result()


def _create_host(state: RigState, host: Host, lock: threading.Lock) -> None:
    ip("link", "add", host.underlay_link, "netns", state.underlay_netns, "type", "veth",
       "peer", "name", host.host_link, "netns", host.netns)
    ip("link", "set", host.underlay_link, "master", UNDERLAY_BRIDGE, "up",
       netns=state.underlay_netns)
    ip("link", "set", host.host_link, "up", netns=host.netns)
    runtime = ovs_runtime(host)
    try:
        try:
            runtime.start()  # also br-int, which the agent would otherwise make
        finally:
            record_ovs(state, host, runtime, lock)  # whatever of it did start
        runtime.vsctl("--may-exist", "add-br", PHYSICAL_BRIDGE, "--", "set", "Bridge",
                      PHYSICAL_BRIDGE, "datapath_type=netdev", "fail_mode=standalone",
                      "--", "--may-exist", "add-port", PHYSICAL_BRIDGE, host.host_link)
    except OvsError as exc:
        raise ClusterError(f"host {host.name}: {exc}") from exc
    prefix = ipaddress.ip_network(state.underlay_cidr).prefixlen
    ip("addr", "add", f"{host.local_ip}/{prefix}", "dev", PHYSICAL_BRIDGE, netns=host.netns)
    ip("link", "set", PHYSICAL_BRIDGE, "up", netns=host.netns)
    if not runtime.running():
        raise ClusterError(f"host {host.name}: Open vSwitch did not stay up "
                           f"(logs in {host.ovs_dir})")


def record_ovs(state: RigState, host: Host, runtime: OvsRuntime, lock: threading.Lock) -> None:
    with lock:
        for daemon in DAEMONS:
            pid = runtime.pid(daemon)
            if pid is not None:
                state.processes.append(Process(f"ovs:{host.name}:{daemon}", pid, daemon,
                                               str(host.ovs_dir / f"{daemon}.log")))
        state.save()


def remove_hosts(state: RigState) -> list[str]:
    """Stop every recorded OVS daemon, delete the recorded namespaces and links.

    Returns what could not be removed (empty when all went)."""
    left: list[str] = []
    for process in state.processes:
        if process.name.startswith("ovs:"):
            stop(process, timeout=10)
    for name in reversed(state.netns):
        if netns_exists(name):
            # Deleting the namespace deletes its veth ends and netdev taps with it.
            with contextlib.suppress(ClusterError):
                ip("netns", "del", name)
        if netns_exists(name):
            left.append(f"namespace {name}")
    for link in state.links:
        if link_exists(link):
            with contextlib.suppress(ClusterError):
                ip("link", "del", link)
            if link_exists(link):
                left.append(f"link {link}")
    return left
