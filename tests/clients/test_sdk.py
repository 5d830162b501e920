"""openstacksdk against a live vifwire: the same flows as the CLI, plus paging, tags, bulk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest
from openstack import exceptions

from .conftest import HOST

# openstacksdk's own pending deprecations (InfluxDB support, internal helpers) are
# not about what it receives from vifwire.
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack.*")


@pytest.fixture(scope="module")
def conn(clouds_yaml: Path) -> Iterator[openstack.connection.Connection]:
    config = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)])
    connection = openstack.connection.Connection(config=config.get_one(cloud="vifwire"))
    yield connection
    connection.close()


def test_sdk_crud(conn: openstack.connection.Connection) -> None:
    net = conn.network.create_network(name="sdk-net")
    assert net.status == "ACTIVE" and net.provider_network_type == "vxlan"
    net = conn.network.update_network(net, description="d", if_revision=1)
    assert net.description == "d" and net.revision_number == 2
    with pytest.raises(exceptions.PreconditionFailedException):
        conn.network.update_network(net.id, name="late", if_revision=1)
    sub = conn.network.create_subnet(network_id=net.id, ip_version=6, cidr="fd00:30::/64",
                                     name="sdk-v6")
    assert sub.gateway_ip == "fd00:30::1"
    port = conn.network.create_port(network_id=net.id, device_id="vm-sdk",
                                    device_owner="compute:nova", binding_host_id=HOST)
    assert port.binding_vif_type == "ovs" and port.fixed_ips[0]["subnet_id"] == sub.id
    assert [p.id for p in conn.network.ports(device_id="vm-sdk")] == [port.id]
    assert conn.network.get_port(port.id).created_at
    conn.network.delete_port(port)
    conn.network.delete_subnet(sub)
    conn.network.delete_network(net)
    with pytest.raises(exceptions.NotFoundException) as caught:
        conn.network.get_network(net.id)
    assert f"Network {net.id} could not be found" in str(caught.value)
    assert [a.host for a in conn.network.agents()] == [HOST]


def test_sdk_paging_sorting_tags(conn: openstack.connection.Connection) -> None:
    nets = [conn.network.create_network(name=f"page-{i}") for i in range(5)]
    paged = [n.name for n in conn.network.networks(limit=2, sort_key="name", sort_dir="desc")]
    assert paged == [f"page-{i}" for i in reversed(range(5))]
    conn.network.set_tags(nets[1], ["blue", "green"])
    conn.network.add_tag(nets[2], "blue")
    assert [n.name for n in conn.network.networks(tags="blue,green")] == ["page-1"]
    assert {n.name for n in conn.network.networks(any_tags="blue")} == {"page-1", "page-2"}
    assert conn.network.get_network(nets[1].id).tags == ["blue", "green"]
    conn.network.remove_tag(nets[2], "blue")
    assert conn.network.get_network(nets[2].id).tags == []
    with pytest.raises(exceptions.BadRequestException) as caught:
        list(conn.network.networks(sort_key="subnets"))
    assert "invalid attribute for sort_keys" in str(caught.value)
    for net in nets:
        conn.network.delete_network(net)
