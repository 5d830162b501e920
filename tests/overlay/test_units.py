"""The pure parts: the MTU rule, the br-tun planner, and the overlay's bookkeeping
(casts racing a full sync, removes naming a host), on a real LocalBus."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from vifwire.agent.overlay import Overlay
from vifwire.agent.tunnels import BASE_KEY, LocalNet, plan, tunnel_name
from vifwire.bus.base import SERVER_TOPIC
from vifwire.bus.local import LocalBus
from vifwire.cli.config import ConfigError, read_config
from vifwire.messages import FdbEntry, FdbGone, PortDetails
from vifwire.server.mtu import network_mtu
from vifwire.settings import OvsSettings, Settings

LOCAL = "198.18.0.1"


def entry(port_id: str, network_id: str = "n1", host: str = "h2", local_ip: str = "198.18.0.2",
          mac: str = "fa:16:3e:00:00:02", ips: tuple[str, ...] = ("10.0.0.2",)) -> FdbEntry:
    return FdbEntry(port_id=port_id, network_id=network_id, network_type="vxlan",
                    segmentation_id=100, mac_address=mac, ip_addresses=list(ips), host=host,
                    local_ip=local_ip)


@pytest.mark.parametrize(("changes", "network_type", "mtu"), [
    ({}, "vxlan", 1450),  # Neutron: 1500 - 20 (IPv4) - 30 (VXLAN)
    ({"overlay_ip_version": 6}, "vxlan", 1430),
    ({"path_mtu": 1400}, "vxlan", 1350),
    ({"path_mtu": 9000}, "vxlan", 1450),  # the smaller of the two
    ({"global_physnet_mtu": 9000}, "vxlan", 8950),
    ({}, "geneve", 1450),
    ({}, "vlan", 1500),
    ({"path_mtu": 1400}, "flat", 1500),  # path_mtu is for tunnels only
    ({"global_physnet_mtu": 0}, "vxlan", 0),
])
def test_network_mtu_is_neutrons_rule(changes: dict[str, Any], network_type: str,
                                      mtu: int) -> None:
    assert network_mtu(Settings().with_(**changes), network_type) == mtu


def test_plan_floods_a_network_only_to_its_hosts() -> None:
    local = {"n1": LocalNet(vlan=5, vni=100), "n2": LocalNet(vlan=6, vni=200)}
    remotes = [entry("p2"), entry("p3", "n2", "h3", "198.18.0.3", "fa:16:3e:00:00:03"),
               entry("p4", "n9", "h4", "198.18.0.4"),  # a network not held here
               entry("p5", "n1", "h1", LOCAL)]  # our own address: never a tunnel
    wanted = plan(LOCAL, local, remotes)
    to_h2, to_h3 = tunnel_name("198.18.0.2"), tunnel_name("198.18.0.3")
    assert wanted.tunnels == {to_h2: "198.18.0.2", to_h3: "198.18.0.3"}
    assert to_h2 == "vxlan-c6120002"
    n1 = wanted.flows["net:n1"]
    assert n1[0] == ("table=4,priority=1,tun_id=100,actions=push_vlan:0x8100,"
                     "set_field:4101->vlan_vid,output:patch-int")
    assert n1[1] == (f"table=22,priority=1,dl_vlan=5,actions=strip_vlan,set_tunnel:100,"
                     f"output:{to_h2}")
    assert to_h3 not in "".join(n1)
    assert set(wanted.flows) == {BASE_KEY, "net:n1", "net:n2", "port:p2", "port:p3",
                                 f"tun:{to_h2}", f"tun:{to_h3}"}
    unicast, arp = wanted.flows["port:p2"]
    assert unicast == (f"table=20,priority=2,dl_vlan=5,dl_dst=fa:16:3e:00:00:02,"
                       f"actions=strip_vlan,set_tunnel:100,output:{to_h2}")
    assert "arp_tpa=10.0.0.2" in arp and "load:0xfa163e000002->NXM_NX_ARP_SHA[]" in arp


def test_plan_without_remote_hosts_floods_nothing() -> None:
    wanted = plan(LOCAL, {"n1": LocalNet(5, 100)}, [])
    assert wanted.tunnels == {}
    assert wanted.flows["net:n1"] == (
        "table=4,priority=1,tun_id=100,actions=push_vlan:0x8100,set_field:4101->vlan_vid,"
        "output:patch-int",)


def test_plan_answers_arp_for_ipv4_only() -> None:
    wanted = plan(LOCAL, {"n1": LocalNet(5, 100)}, [entry("p2", ips=("10.0.0.2", "fd00::2"))])
    assert len(wanted.flows["port:p2"]) == 2


class SlowServer:
    """Answers get_host_fdb only when told to, with what it held when asked."""

    def __init__(self, entries: list[FdbEntry]) -> None:
        self.entries = entries
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def get_host_fdb(self, host: str) -> list[FdbEntry]:
        snapshot = list(self.entries)
        self.asked.set()
        await self.answer.wait()
        return snapshot


def details(network_id: str, network_type: str = "vxlan") -> PortDetails:
    return PortDetails(port_id="p1", mac_address="fa:16:3e:00:00:01", network_id=network_id,
                       network_type=network_type, segmentation_id=100, physical_network=None,
                       mtu=1450, admin_state_up=True, fixed_ips=[], device_owner="",
                       device_id="", host="h1", status="DOWN")


async def test_casts_during_a_sync_win_over_its_answer() -> None:
    bus = LocalBus()
    server = SlowServer([entry("p2"), entry("p3"), entry("p9", host="h1", local_ip=LOCAL)])
    await bus.serve(SERVER_TOPIC, server)
    overlay = Overlay("h1", LOCAL, bus, OvsSettings(run_dir=Settings().run_dir))
    syncing = asyncio.create_task(overlay.sync())
    await server.asked.wait()
    overlay.fdb_remove([FdbGone(port_id="p2", network_id="n1", host="h2")])  # newer
    overlay.fdb_add([entry("p4")])
    server.answer.set()
    assert await syncing
    # p2's removal and p4 are newer than the answer; our own p9 is never remote.
    assert set(overlay.remote_ports()) == {"p3", "p4"}
    # A second sync with nothing in flight is the whole truth again.
    server.entries = [entry("p3")]
    server.asked.clear()
    assert await overlay.sync()
    assert set(overlay.remote_ports()) == {"p3"}


async def test_a_remove_only_erases_the_place_it_names() -> None:
    overlay = Overlay("h1", LOCAL, LocalBus(), OvsSettings(run_dir=Settings().run_dir))
    overlay.fdb_add([entry("p2", host="h3", local_ip="198.18.0.3")])  # p2 moved to h3
    overlay.fdb_remove([FdbGone(port_id="p2", network_id="n1", host="h2")])  # late, from h2
    assert overlay.remote_ports()["p2"]["host"] == "h3"
    overlay.hold("n1", 5, details("n1"))
    overlay.hold("n2", 6, details("n2", network_type="vlan"))  # not tunnelled: not held
    overlay.release("n2")
    assert set(overlay.remote_ports()) == {"p2"}
    overlay.release("n1")  # the last port of n1 left: its remote ports go too
    assert overlay.remote_ports() == {}


def test_plan_memo_reuses_unchanged_rules_only() -> None:
    local = {"n1": LocalNet(5, 100)}
    memo: dict[str, Any] = {}
    first = plan(LOCAL, local, [entry("p2"), entry("p3", mac="fa:16:3e:00:00:03")], memo)
    again = plan(LOCAL, local, [entry("p2"), entry("p3", mac="fa:16:3e:00:00:33")], memo)
    assert again.flows["port:p2"] is first.flows["port:p2"]
    assert "fa:16:3e:00:00:33" in again.flows["port:p3"][0]
    assert again.flows == plan(LOCAL, local, [entry("p2"),
                                              entry("p3", mac="fa:16:3e:00:00:33")]).flows
    plan(LOCAL, {"n1": LocalNet(7, 100)}, [entry("p2")], memo)  # a new VLAN: rebuilt
    assert set(memo) == {"p2"} and "dl_vlan=7" in memo["p2"][1][0]


def test_configuration_file_sets_the_tunnel_address_and_mtu_rule(tmp_path: Path) -> None:
    path = tmp_path / "vifwire.conf"
    path.write_text("[ovs]\nlocal_ip = 198.18.0.5\n[ml2]\npath_mtu = 1400\n"
                    "overlay_ip_version = 6\n")
    settings = Settings(**read_config(path))
    assert settings.local_ip == "198.18.0.5"
    assert network_mtu(settings, "vxlan") == 1400 - 40 - 30
    path.write_text("[ovs]\nlocal_ip = 198.18.0\n")
    with pytest.raises(ConfigError, match=r"\[ovs\] local_ip = '198.18.0'"):
        read_config(path)
