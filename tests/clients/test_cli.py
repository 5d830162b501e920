"""The real `openstack` CLI against a live vifwire: networks, subnets, ports, agents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import HOST

OPENSTACK = Path(sys.executable).with_name("openstack")


@pytest.fixture(scope="module")
def cli(clouds_yaml: Path) -> Any:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml), "OS_CLOUD": "vifwire"}

    def run(*args: str, json_out: bool = True) -> Any:
        argv = [str(OPENSTACK), *args, *(["-f", "json"] if json_out else [])]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if json_out else done.stdout
    return run


def test_network_subnet_port_lifecycle(cli: Any) -> None:
    net = cli("network", "create", "--description", "first", "cli-net")
    assert net["name"] == "cli-net" and net["status"] == "ACTIVE"
    assert net["provider:network_type"] == "vxlan" and net["mtu"] == 1450
    assert [n["Name"] for n in cli("network", "list")] == ["cli-net"]
    cli("network", "set", "--name", "cli-net2", "--description", "renamed", "cli-net",
        json_out=False)
    shown = cli("network", "show", "cli-net2")
    assert (shown["description"], shown["revision_number"]) == ("renamed", 2)

    v4 = cli("subnet", "create", "--network", "cli-net2", "--subnet-range", "10.20.0.0/24",
             "--allocation-pool", "start=10.20.0.10,end=10.20.0.50",
             "--gateway", "10.20.0.1", "sub4")
    assert v4["cidr"] == "10.20.0.0/24" and v4["gateway_ip"] == "10.20.0.1"
    assert v4["allocation_pools"] == [{"start": "10.20.0.10", "end": "10.20.0.50"}]
    v6 = cli("subnet", "create", "--network", "cli-net2", "--subnet-range", "fd00:20::/64",
             "--ip-version", "6", "sub6")
    assert (v6["ip_version"], v6["gateway_ip"]) == (6, "fd00:20::1")
    assert {s["Name"] for s in cli("subnet", "list")} == {"sub4", "sub6"}
    cli("subnet", "set", "--name", "sub4b", "--allocation-pool",
        "start=10.20.0.100,end=10.20.0.110", "sub4", json_out=False)
    pools = cli("subnet", "show", "sub4b")["allocation_pools"]
    assert {"start": "10.20.0.100", "end": "10.20.0.110"} in pools and len(pools) == 2

    port = cli("port", "create", "--network", "cli-net2",
               "--fixed-ip", "subnet=sub4b,ip-address=10.20.0.20", "--device", "vm-1",
               "--device-owner", "compute:nova", "--host", HOST, "--disable-port-security",
               "cli-port")
    assert port["fixed_ips"] == [{"subnet_id": v4["id"], "ip_address": "10.20.0.20"}]
    assert (port["device_id"], port["device_owner"]) == ("vm-1", "compute:nova")
    assert (port["binding_host_id"], port["binding_vif_type"]) == (HOST, "ovs")
    assert port["port_security_enabled"] is False
    listed = cli("port", "list", "--device-owner", "compute:nova", "--host", HOST)
    assert [p["ID"] for p in listed] == [port["id"]]
    assert listed[0]["Fixed IP Addresses"] == port["fixed_ips"]
    cli("port", "set", "--name", "cli-port2", "--host", "compute-9", "cli-port",
        json_out=False)
    moved = cli("port", "show", "cli-port2")
    assert (moved["binding_host_id"], moved["binding_vif_type"]) == ("compute-9",
                                                                     "binding_failed")

    agents = cli("network", "agent", "list")
    assert [(a["Host"], a["Agent Type"], a["Alive"], a["Binary"]) for a in agents] == [
        (HOST, "Open vSwitch agent", True, "neutron-openvswitch-agent")]

    cli("port", "delete", "cli-port2", json_out=False)
    cli("subnet", "delete", "sub6", json_out=False)
    cli("network", "delete", "cli-net2", json_out=False)
    assert cli("network", "list") == []
    assert cli("subnet", "list") == []


def test_errors_reach_the_user(cli: Any, clouds_yaml: Path) -> None:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml), "OS_CLOUD": "vifwire"}
    done = subprocess.run([str(OPENSTACK), "network", "show", "no-such-net"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "No Network found for no-such-net" in done.stderr
    cli("network", "create", "err-net")
    done = subprocess.run([str(OPENSTACK), "subnet", "create", "--network", "err-net",
                           "--subnet-range", "10.0.0.0/33", "bad"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "10.0.0.0/33" in done.stderr
