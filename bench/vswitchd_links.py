"""What a link notification in a host's namespace costs its ovs-vswitchd.

    .venv/bin/python bench/vswitchd_links.py [--ports 150] [--toggles 100] [--threads 4]

One private OVS (netdev datapath) in a namespace of its own, as `vifwire cluster`
places a host. Phase 1 plugs `--ports` VMs the emulator's way
(`vifwire.compute.vm.create_sync`, then os-vif's add-port with the dead VLAN and
the agent's tag, `--threads` at a time) and counts, per VM, the link
notifications the host namespace saw, vswitchd's CPU, its `bridge_reconfigure`
runs and the netlink requests it sent (`ovs-appctl coverage/show`). Phase 2
then sets a veth that is *not* on any bridge up and down `--toggles` times
(0.05 s apart) and counts the same per notification: the price of any device's
state change in the namespace, once the bridge holds `--ports` ports.

Why it matters: in OVS 3.1 every RTNLGRP_LINK message runs a full
`bridge_reconfigure` (bridge.c's if_notifier), and every change of a device on
a bridge makes ofproto-dpif's `port_run` read each port's flags afresh
(netdev_get_carrier -> netdev_get_flags: one RTM_GETLINK per port, uncached).
The cost per notification grows with the bridge's ports.

Everything it makes is named `vwlinks-*` and removed by those names at the end
(also after an error). Writes bench/results/vswitchd-links-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from pyroute2 import IPRoute  # type: ignore[import-untyped]

from vifwire.compute import namespaces, vm
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import OvsSettings

RESULTS = Path(__file__).parent / "results"
HOST_NS = "vwlinks-host"
VM_PREFIX = "vwlinks-"
SPARE = ("vwlinks-v0", "vwlinks-v1")  # the veth no bridge holds
COUNTERS = ("bridge_reconfigure", "netlink_sent")
RTMGRP_LINK = 0x1


class LinkCounter:
    """Counts RTNLGRP_LINK messages in a namespace, on a thread of its own."""

    def __init__(self, netns: str) -> None:
        self.count = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(netns,), daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self, netns: str) -> None:
        # pyroute2's socket is used on the thread that made it (its sync API
        # runs an event loop per thread).
        with namespaces.entered(netns):
            ipr = IPRoute()
        ipr.bind(groups=RTMGRP_LINK)
        self._ready.set()
        while not self._stop.is_set():
            for msg in ipr.get():
                if str(msg.get("event", "")).endswith("LINK"):
                    self.count += 1

    def close(self) -> None:
        self._stop.set()  # the thread ends with the process (it blocks in get)


def coverage(runtime: OvsRuntime) -> dict[str, int]:
    totals = {}
    for line in runtime.appctl("ovs-vswitchd", "coverage/show").splitlines():
        found = re.match(r"(\w+)\s+.*total:\s+(\d+)", line)
        if found and found.group(1) in COUNTERS:
            totals[found.group(1)] = int(found.group(2))
    return totals


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def specs(count: int) -> list[vm.VmSpec]:
    return [vm.VmSpec(f"{i:08x}-0000-4000-8000-{i:012x}",
                      f"fa:16:3e:7a:{i // 256:02x}:{i % 256:02x}",
                      f"10.77.{i // 250}.{i % 250 + 2}", 16, 1450, VM_PREFIX, HOST_NS)
            for i in range(count)]


def measure(runtime: OvsRuntime, links: LinkCounter, pid: int,
            action: Callable[[], None]) -> dict[str, float]:
    before, cpu0, links0 = coverage(runtime), cpu_s(pid), links.count
    action()
    time.sleep(2)  # let vswitchd finish what the last change started
    after = coverage(runtime)
    return {"vswitchd_cpu_s": round(cpu_s(pid) - cpu0, 3), "link_messages": links.count - links0,
            **{k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS}}


def per(totals: dict[str, float], n: int) -> dict[str, float]:
    return {k: round(v / n, 3) for k, v in totals.items()}


def run(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    runtime = OvsRuntime(OvsSettings(run_dir=run_dir / "ovs"), netns=HOST_NS)
    vms = specs(args.ports)
    try:
        runtime.start()
        pid = runtime.pid("ovs-vswitchd")
        assert pid is not None
        links = LinkCounter(HOST_NS)

        def plug(spec: vm.VmSpec) -> None:
            vm.create_sync(spec)
            runtime.vsctl("--may-exist", "add-port", "br-int", spec.tap, "tag=4095", "--",
                          "set", "Interface", spec.tap, f"external_ids:iface-id={spec.port_id}")
            runtime.vsctl("set", "Port", spec.tap, "tag=1")

        def plug_all() -> None:
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(plug, vms))

        plugged = measure(runtime, links, pid, plug_all)
        subprocess.run(["ip", "-n", HOST_NS, "link", "add", SPARE[0], "type", "veth",
                        "peer", "name", SPARE[1]], check=True)
        time.sleep(1)

        def toggle() -> None:
            for _ in range(args.toggles // 2):
                for state in ("up", "down"):
                    subprocess.run(["ip", "-n", HOST_NS, "link", "set", SPARE[0], state],
                                   check=True)
                    time.sleep(0.05)

        toggled = measure(runtime, links, pid, toggle)
        links.close()
        return {"plug": {"vms": args.ports, "threads": args.threads, "totals": plugged,
                         "per_vm": per(plugged, args.ports)},
                "unrelated_link_changes": {"bridge_ports": args.ports, "toggles": args.toggles,
                                           "totals": toggled,
                                           "per_toggle": per(toggled, args.toggles)}}
    finally:
        for spec in vms:
            try:
                vm.delete_sync(spec.namespace, spec.tap, HOST_NS)
            except vm.VmError as exc:
                print(f"cleanup: {exc}")
        subprocess.run(["ip", "-n", HOST_NS, "link", "del", SPARE[0]], capture_output=True,
                       check=False)
        runtime.destroy()
        subprocess.run(["ip", "netns", "del", HOST_NS], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, default=150)
    parser.add_argument("--toggles", type=int, default=100)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    if namespaces.exists(HOST_NS):
        raise SystemExit(f"{HOST_NS} exists: another run of this bench, or one that crashed")
    with tempfile.TemporaryDirectory(prefix="vwlinks-") as tmp:
        found = run(args, Path(tmp))
    when = datetime.now(UTC)
    result = {"when": when.isoformat(timespec="seconds"),
              "command": "bench/vswitchd_links.py " + " ".join(
                  f"--{k} {v}" for k, v in vars(args).items()),
              "loadavg_after": list(psutil.getloadavg()), **found}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"vswitchd-links-{when:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    plug, toggled = found["plug"]["per_vm"], found["unrelated_link_changes"]["per_toggle"]
    print(f"per VM plugged ({args.ports} VMs): {plug}")
    print(f"per link change of a device on no bridge, {args.ports} ports on br-int: {toggled}")
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
