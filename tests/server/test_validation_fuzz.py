"""A fuzz of the create and update paths behind the validators (issue 12.6).

Bodies mix near-valid values (addresses, CIDRs, pools, MACs that almost pass)
with JSON of any shape, so they reach the services, not only the converters.
Every answer must be a 2xx or a 4xx NeutronError; a 5xx fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
from hypothesis import HealthCheck
from hypothesis import strategies as st

from clients.live import LiveServer, live_server

ADDRESSES = ["10.0.0.0", "10.0.0.1", "10.0.0.5", "10.0.0.255", "10.0.1.1", "fd00::",
             "fd00::1", "fd00::5%eth0", "FD00::0005", "224.0.0.1", "ff02::1", "0.0.0.0",
             "::", "10.0.0.5 ", "1" * 40]
CIDRS = ["10.0.0.0/24", "10.0.0.0/29", "10.0.0.0/30", "10.0.0.0/31", "10.0.0.0/32",
         "10.0.0.5/24", "fd00::/64", "fd00::/127", "fd00::/128", "ff02::/16", "::/0",
         "0.0.0.0/0", "224.0.0.0/4", "127.0.0.0/8", "fd00::%eth0/64", "10.0.0.0/33"]
MACS = ["fa:16:3e:00:00:01", "FA:16:3E:00:00:01", "fa:16:3e:00:00:01\n", "01:00:5e:00:00:01",
        "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "fa:16:3e:00:00"]
JUNK = st.recursive(st.none() | st.booleans() | st.integers()
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=2), max_leaves=5)


def _mixed(*choices: list[Any]) -> st.SearchStrategy[Any]:
    """Mostly the listed values, sometimes any JSON: enough bodies pass to go deeper."""
    listed = st.sampled_from([v for c in choices for v in c])
    return st.one_of(listed, listed, listed, JUNK)


ADDRESS = _mixed(ADDRESSES)
POOL = st.fixed_dictionaries({"start": ADDRESS, "end": ADDRESS})
ROUTE = st.fixed_dictionaries({"destination": _mixed(CIDRS), "nexthop": ADDRESS})
FIXED_IP = st.fixed_dictionaries({}, optional={"ip_address": ADDRESS, "subnet_id": JUNK})
PAIR = st.fixed_dictionaries({}, optional={"ip_address": _mixed(ADDRESSES, CIDRS),
                                           "mac_address": _mixed(MACS)})
MODES = _mixed(["slaac", "dhcpv6-stateful", "dhcpv6-stateless", ""])

NETWORK = st.fixed_dictionaries({}, optional={
    "provider:network_type": _mixed(["vlan", "vxlan", "flat", "geneve", ""]),
    "provider:segmentation_id": _mixed([1, 4094, 4095, 1.5, 2.0, "7", 0, -1, 2**40]),
    "provider:physical_network": _mixed(["physnet1", ""]), "shared": _mixed([True, False])})
SUBNET = st.fixed_dictionaries({"cidr": _mixed(CIDRS), "ip_version": _mixed([4, 6])}, optional={
    "gateway_ip": ADDRESS, "allocation_pools": st.lists(POOL, max_size=3) | JUNK,
    "host_routes": st.lists(ROUTE, max_size=3) | JUNK,
    "dns_nameservers": st.lists(ADDRESS, max_size=6) | JUNK,
    "enable_dhcp": _mixed([True, False]),
    "ipv6_ra_mode": MODES, "ipv6_address_mode": MODES})
PORT = st.fixed_dictionaries({}, optional={
    "mac_address": _mixed(MACS), "fixed_ips": st.lists(FIXED_IP, max_size=7) | JUNK,
    "allowed_address_pairs": st.lists(PAIR, max_size=3) | JUNK,
    "port_security_enabled": _mixed([True, False]),
    "device_owner": _mixed(["network:dhcp", "compute:nova"]),
    "binding:vnic_type": _mixed(["normal", "direct"]), "binding:profile": JUNK})

SETTINGS = hypothesis.settings(max_examples=150, deadline=None, database=None,
                               derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("validation-fuzz")) as running:
        yield running


class Client:
    def __init__(self, server: LiveServer) -> None:
        self.url = server.url + "/v2.0/"
        self.session = requests.Session()
        self.seen: dict[tuple[str, int], int] = {}

    def send(self, method: str, path: str, body: Any) -> requests.Response:
        response = self.session.request(method, self.url + path, json=body, timeout=30)
        assert response.status_code < 500, (method, path, body, response.text)
        key = (method, response.status_code)
        self.seen[key] = self.seen.get(key, 0) + 1
        if response.status_code >= 400:
            assert set(response.json()["NeutronError"]) == {"type", "message", "detail"}
        return response

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.send("POST", kind + "s", {kind: body})
        assert response.status_code == 201, response.text
        return dict(response.json()[kind])

    def reached(self) -> None:
        """The fuzz got past the validators too: some creates and updates passed."""
        assert self.seen.get(("POST", 201), 0) >= 3, self.seen
        assert self.seen.get(("PUT", 200), 0) >= 3, self.seen
        assert self.seen.get(("POST", 400), 0) >= 5, self.seen


def test_network_bodies(server: LiveServer) -> None:
    client = Client(server)
    net = client.create("network", {})

    @SETTINGS
    @hypothesis.given(body=NETWORK)
    def run(body: dict[str, Any]) -> None:
        created = client.send("POST", "networks", {"network": body})
        if created.status_code == 201:
            client.send("DELETE", f"networks/{created.json()['network']['id']}", None)
        client.send("PUT", f"networks/{net['id']}", {"network": {
            k: v for k, v in body.items() if k == "shared"}})
    run()
    client.reached()


def test_subnet_bodies(server: LiveServer) -> None:
    client = Client(server)
    net = client.create("network", {})
    sub = client.create("subnet", {"network_id": net["id"], "ip_version": 4,
                                   "cidr": "10.9.0.0/24"})

    @SETTINGS
    @hypothesis.given(body=SUBNET)
    def run(body: dict[str, Any]) -> None:
        created = client.send("POST", "subnets", {"subnet": {**body, "network_id": net["id"]}})
        if created.status_code == 201:
            client.send("DELETE", f"subnets/{created.json()['subnet']['id']}", None)
        update = {k: v for k, v in body.items() if k not in ("cidr", "ip_version", "ipv6_ra_mode",
                                                             "ipv6_address_mode")}
        client.send("PUT", f"subnets/{sub['id']}", {"subnet": update})
    run()
    client.reached()


def test_port_bodies(server: LiveServer) -> None:
    client = Client(server)
    net = client.create("network", {})
    v4 = client.create("subnet", {"network_id": net["id"], "ip_version": 4,
                                  "cidr": "10.0.0.0/24"})
    client.create("subnet", {"network_id": net["id"], "ip_version": 6, "cidr": "fd00::/64"})
    port = client.create("port", {"network_id": net["id"]})
    subnet_ids = st.sampled_from([v4["id"], "0c8e2c5b-6f1c-4e55-9a3c-0b1d3e0f0a11"])

    @SETTINGS
    @hypothesis.given(body=PORT, subnet_id=subnet_ids)
    def run(body: dict[str, Any], subnet_id: str) -> None:
        if isinstance(body.get("fixed_ips"), list):
            body["fixed_ips"] = [dict(f, subnet_id=subnet_id)
                                 if isinstance(f, dict) and "subnet_id" in f else f
                                 for f in body["fixed_ips"]]
        created = client.send("POST", "ports", {"port": {**body, "network_id": net["id"]}})
        if created.status_code == 201:
            client.send("DELETE", f"ports/{created.json()['port']['id']}", None)
        client.send("PUT", f"ports/{port['id']}", {"port": body})
    run()
    client.reached()


def test_list_queries(server: LiveServer) -> None:
    client = Client(server)
    keys = st.sampled_from(["fixed_ips", "mac_address", "revision_number", "limit", "marker",
                            "sort_key", "sort_dir", "ip_version", "cidr", "id", "fields",
                            "provider:segmentation_id", "page_reverse", "tags"])
    values = st.one_of(st.sampled_from(["ip_address=10.0.0.5", "subnet_id=x", "ip_address=",
                                        "bogus=1", "1.5", "1_0", " 7", "²", "9" * 5000]),
                       st.text(max_size=12))

    @SETTINGS
    @hypothesis.given(params=st.lists(st.tuples(keys, values), max_size=6),
                      kind=st.sampled_from(["networks", "subnets", "ports"]))
    def run(params: list[tuple[str, str]], kind: str) -> None:
        response = client.session.get(client.url + kind, params=params, timeout=30)
        assert response.status_code < 500, (kind, params, response.text)
    run()
