"""A private Open vSwitch (ovsdb-server + ovs-vswitchd) under a run directory.

The project never touches a system Open vSwitch: each host gets its own
database, sockets, logs and pid files in `OvsSettings.run_dir`, and bridges use
the userspace `netdev` datapath so no kernel module is needed. Daemons are
stopped by the pids they wrote, never by name.

`netns` runs the daemons inside a network namespace (a simulated host), so
several private switches on one machine never fight over the bridges' tap
devices.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vifwire.procs import terminate
from vifwire.settings import OvsSettings, Settings

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DAEMONS = ("ovs-vswitchd", "ovsdb-server")
# The userspace datapath does its forwarding in its own thread; upcall handlers and
# revalidators sized for a kernel datapath only contend for a small host's cores.
VSWITCHD_TUNING = ("other_config:n-handler-threads=1", "other_config:n-revalidator-threads=1")


class OvsError(Exception):
    """Open vSwitch is missing, failed to start, or did not answer."""


@dataclass(frozen=True)
class OvsRuntime:
    settings: OvsSettings
    netns: str | None = None

    @property
    def run_dir(self) -> Path:
        return self.settings.run_dir

    def env(self) -> dict[str, str]:
        run = str(self.run_dir)
        return {**os.environ, "OVS_RUNDIR": run, "OVS_LOGDIR": run, "OVS_DBDIR": run}

    def _prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def _run(self, argv: Sequence[str], timeout: float = 20.0) -> str:
        try:
            done = subprocess.run([*self._prefix(), *argv], env=self.env(), capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except FileNotFoundError as exc:
            raise OvsError(f"{argv[0]} not found: install Debian's openvswitch-switch") from exc
        except subprocess.TimeoutExpired as exc:
            raise OvsError(f"{' '.join(argv)} timed out after {timeout}s") from exc
        if done.returncode != 0:
            raise OvsError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def vsctl(self, *args: str, timeout: float = 10.0) -> str:
        return self._run(["ovs-vsctl", f"--db={self.settings.connection}",
                          f"--timeout={int(timeout)}", *args], timeout=timeout + 5)

    def ofctl(self, *args: str) -> str:
        # OVS_RUNDIR in env() makes ovs-ofctl find "<bridge>.mgmt" in our run dir.
        return self._run(["ovs-ofctl", *args])

    def appctl(self, daemon: str, *args: str) -> str:
        """ovs-appctl to one of this run dir's daemons (e.g. "coverage/show")."""
        return self._run(["ovs-appctl", "-t", str(self.run_dir / f"{daemon}.ctl"), *args])

    def pid(self, daemon: str) -> int | None:
        pidfile = self.run_dir / f"{daemon}.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        cmdline = Path(f"/proc/{pid}/cmdline")
        with contextlib.suppress(OSError):
            if daemon.encode() not in cmdline.read_bytes():
                return None  # the pid was recycled by some other process
        return pid

    def running(self) -> bool:
        return all(self.pid(d) is not None for d in DAEMONS) and self.settings.db_socket.exists()

    def start(self) -> None:
        """Start both daemons (if not already running) and create the integration bridge."""
        if not shutil.which("ovsdb-server") or not SCHEMA.exists():
            raise OvsError("Open vSwitch is not installed (apt-get install openvswitch-switch)")
        if self.netns:
            ensure_netns(self.netns)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.running():
            self.stop()
            db = self.run_dir / "conf.db"
            if not db.exists():
                self._run(["ovsdb-tool", "create", str(db), str(SCHEMA)])
            self.start_ovsdb()
            self.vsctl("--no-wait", "init")
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".", *VSWITCHD_TUNING)
            self.start_vswitchd()
        self.ensure_bridge(self.settings.integration_bridge)

    def start_ovsdb(self) -> None:
        """Start ovsdb-server on the existing database (also after it crashed)."""
        self._run(["ovsdb-server", str(self.run_dir / "conf.db"),
                   f"--remote=punix:{self.settings.db_socket}",
                   f"--pidfile={self.run_dir / 'ovsdb-server.pid'}", "--detach",
                   f"--log-file={self.run_dir / 'ovsdb-server.log'}",
                   f"--unixctl={self.run_dir / 'ovsdb-server.ctl'}"])

    def start_vswitchd(self) -> None:
        """Start ovs-vswitchd on the running database (also after it crashed)."""
        self._run(["ovs-vswitchd", self.settings.connection,
                   f"--pidfile={self.run_dir / 'ovs-vswitchd.pid'}", "--detach",
                   f"--log-file={self.run_dir / 'ovs-vswitchd.log'}",
                   f"--unixctl={self.run_dir / 'ovs-vswitchd.ctl'}"])

    def ensure_bridge(self, name: str) -> None:
        self.vsctl("--may-exist", "add-br", name, "--", "set", "Bridge", name,
                   f"datapath_type={self.settings.datapath_type}")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the daemons this run dir's pid files name; leaves the database file.

        The netdev datapath's tap devices (one per bridge, plus "ovs-netdev")
        outlive ovs-vswitchd, so they are deleted too, by name.
        """
        taps = self._datapath_taps() if self.running() else []
        for daemon in DAEMONS:
            pid = self.pid(daemon)
            if pid is not None:
                terminate(pid, timeout)

        for tap in taps:
            subprocess.run([*self._prefix(), "ip", "link", "del", tap], capture_output=True,
                           check=False, timeout=10)

    def _datapath_taps(self) -> list[str]:
        try:
            bridges = self.vsctl("list-br", timeout=2).split()
        except OvsError:
            bridges = [self.settings.integration_bridge]
        return [*bridges, "ovs-netdev"]

    def destroy(self) -> None:
        """Stop and delete everything under the run dir."""
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def host_runtime(settings: Settings) -> OvsRuntime:
    """The private Open vSwitch of the host `settings` describe."""
    return OvsRuntime(settings.ovs, netns=settings.ovs_netns)


def ensure_netns(name: str) -> None:
    """Create the network namespace `name` (a simulated host) if it is missing."""
    if Path(f"/run/netns/{name}").exists():
        return
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0 and not Path(f"/run/netns/{name}").exists():
        raise OvsError(f"cannot create network namespace {name}: {done.stderr.strip()}")
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=False)
