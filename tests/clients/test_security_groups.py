"""The real `openstack` CLI and openstacksdk against a live vifwire: security groups,
their rules, and ports in them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
from openstack import exceptions

OPENSTACK = Path(sys.executable).with_name("openstack")
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack.*")


@pytest.fixture(scope="module")
def run(clouds_yaml: Path) -> Any:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml), "OS_CLOUD": "vifwire"}

    def call(*args: str, json_out: bool = True, ok: bool = True) -> Any:
        argv = [str(OPENSTACK), *args, *(["-f", "json"] if json_out else [])]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        if not ok:
            assert done.returncode != 0, done.stdout
            return done.stderr
        assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if json_out else done.stdout
    return call


@pytest.fixture(scope="module")
def conn(clouds_yaml: Path) -> Iterator[openstack.connection.Connection]:
    config = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)])
    connection = openstack.connection.Connection(config=config.get_one(cloud="vifwire"))
    yield connection
    connection.close()


def test_cli_security_groups_and_rules(run: Any) -> None:
    listed = run("security", "group", "list")
    assert [g["Name"] for g in listed] == ["default"]
    group = run("security", "group", "create", "--description", "web servers", "cli-web")
    assert (group["name"], group["description"], group["stateful"]) == (
        "cli-web", "web servers", True)
    assert len(group["rules"]) == 2  # the two egress rules
    rule = run("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
               "--dst-port", "80:443", "--remote-ip", "10.1.0.0/16", "cli-web")
    assert (rule["protocol"], rule["port_range_min"], rule["port_range_max"]) == (
        "tcp", 80, 443)
    assert rule["remote_ip_prefix"] == "10.1.0.0/16" and rule["direction"] == "ingress"
    icmp = run("security", "group", "rule", "create", "--protocol", "icmp", "--icmp-type",
               "8", "--remote-group", "default", "cli-web")
    assert (icmp["port_range_min"], icmp["remote_group_id"]) == (8, listed[0]["ID"])
    rules = run("security", "group", "rule", "list", "cli-web")
    assert {r["ID"] for r in rules} >= {rule["id"], icmp["id"]} and len(rules) == 4
    duplicate = run("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
                    "--dst-port", "80:443", "--remote-ip", "10.1.0.0/16", "cli-web", ok=False)
    assert "Security group rule already exists" in duplicate
    bad = run("security", "group", "rule", "create", "--ethertype", "IPv4", "--remote-ip",
              "fd00::/8", "cli-web", ok=False)
    assert "Conflicting value ethertype IPv4 for CIDR fd00::/8" in bad
    run("security", "group", "set", "--name", "cli-web2", "cli-web", json_out=False)
    assert run("security", "group", "show", "cli-web2")["name"] == "cli-web2"
    run("security", "group", "rule", "delete", rule["id"], json_out=False)
    run("security", "group", "delete", "cli-web2", json_out=False)
    # noauth makes the CLI an admin, which may delete the default group, as on Neutron;
    # the project's next list makes it anew.
    default = run("security", "group", "show", "default")["id"]
    run("security", "group", "delete", "default", json_out=False)
    listed = run("security", "group", "list")
    assert [g["Name"] for g in listed] == ["default"] and listed[0]["ID"] != default


def test_cli_port_in_a_group(run: Any) -> None:
    run("network", "create", "sg-net", json_out=False)
    run("subnet", "create", "--network", "sg-net", "--subnet-range", "10.40.0.0/24",
        "sg-sub", json_out=False)
    group = run("security", "group", "create", "cli-db")
    port = run("port", "create", "--network", "sg-net", "--security-group", "cli-db",
               "sg-port")
    assert port["security_group_ids"] == [group["id"]]
    in_use = run("security", "group", "delete", "cli-db", json_out=False, ok=False)
    assert "in use" in in_use
    run("port", "set", "--no-security-group", "--disable-port-security", "sg-port",
        json_out=False)
    shown = run("port", "show", "sg-port")
    assert (shown["security_group_ids"], shown["port_security_enabled"]) == ([], False)
    run("port", "delete", "sg-port", json_out=False)
    run("security", "group", "delete", "cli-db", json_out=False)
    run("subnet", "delete", "sg-sub", json_out=False)
    run("network", "delete", "sg-net", json_out=False)


def test_sdk_security_groups(conn: openstack.connection.Connection) -> None:
    group = conn.network.create_security_group(name="sdk-sg", stateful=False)
    assert group.stateful is False and len(group.security_group_rules) == 2
    rule = conn.network.create_security_group_rule(
        security_group_id=group.id, direction="ingress", ethertype="IPv6",
        protocol="udp", port_range_min=53, port_range_max=53, remote_ip_prefix="fd00::1")
    assert (rule.remote_ip_prefix, rule.protocol, rule.ether_type) == (
        "fd00::1/128", "udp", "IPv6")
    assert conn.network.get_security_group_rule(rule.id).port_range_max == 53
    found = conn.network.find_security_group("sdk-sg")
    assert found is not None and found.id == group.id
    rules = list(conn.network.security_group_rules(security_group_id=group.id))
    assert rule.id in {r.id for r in rules} and len(rules) == 3
    conn.network.set_tags(group, ["blue"])
    assert [g.id for g in conn.network.security_groups(tags="blue")] == [group.id]
    with pytest.raises(exceptions.BadRequestException) as caught:
        conn.network.create_security_group_rule(
            security_group_id=group.id, direction="ingress", protocol="tcp",
            remote_ip_prefix="::/0")
    assert "Conflicting value ethertype IPv4 for CIDR ::/0" in str(caught.value)
    with pytest.raises(exceptions.ConflictException):
        conn.network.create_security_group(name="default")
    conn.network.delete_security_group_rule(rule)
    conn.network.delete_security_group(group)
    with pytest.raises(exceptions.NotFoundException):
        conn.network.get_security_group(group.id)
