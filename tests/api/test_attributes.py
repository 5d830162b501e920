"""Converters and attribute tables: what a body may hold, as neutron-lib validates it
(issue 12.6)."""

from __future__ import annotations

import contextlib
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from vifwire.api import attributes as a
from vifwire.api import converters as c
from vifwire.server import faults


def _refused(convert: Any, value: Any, reason: str = "") -> None:
    with pytest.raises(ValueError) as caught:
        convert(value)
    assert reason in str(caught.value)


def test_ip_addresses_are_canonical_and_have_no_zone() -> None:
    assert c.ip_address("2001:DB8:50::0011") == "2001:db8:50::11"
    for zoned in ("2001:db8:50::11%eth1", "fe80::1%1", "2001:db8:50::11%"):
        _refused(c.ip_address, zoned, "is not a valid IP address")
    for bad in ("10.0.0.1 ", "010.0.0.1", "10.0.1", 7, None, "1" * 59):
        _refused(c.ip_address, bad)
    assert c.ip_or_none(None) is None
    _refused(c.cidr, "ff02::%eth0/16", "is not a valid IP subnet")
    _refused(c.cidr, "10.0.0.0", "is not a valid IP subnet")  # no prefix


def test_macs_are_strict_unicast_and_lower_case() -> None:
    assert c.mac("FA:16:3E:00:00:0A") == "fa:16:3e:00:00:0a"
    for bad in ("fa:16:3e:00:00:01\n", "fa:16:3e:00:00:01 ", " fa:16:3e:00:00:01",
                "fa-16-3e-00-00-01", "fa:16:3e:00:00", "fa:16:3e:00:00:0g"):
        _refused(c.mac, bad, "is not a valid MAC address")
    _refused(c.mac, "00:00:00:00:00:00", "is not a valid MAC address")
    _refused(c.mac, "FF:FF:FF:FF:FF:FF", "is not a valid MAC address")
    for multicast in ("01:00:5e:00:00:01", "33:33:00:00:00:01", "fb:16:3e:00:00:01"):
        _refused(c.mac, multicast, "is a multicast address")


def test_integers_are_never_truncated() -> None:
    assert c.integer_or_none(100) == 100 and c.integer_or_none(2.0) == 2
    assert c.integer_or_none(None) is None
    for bad in (1.5, "100", True, [1], {"a": 1}, float("inf"), float("nan")):
        _refused(c.integer_or_none, bad, "is not an integer")
    assert c.integer_text("-12") == -12
    for text in ("1.5", "1_000", " 7", "7\n", "0x10", ""):
        _refused(c.integer_text, text, "is not an integer")


def test_fixed_ips_have_no_duplicate_address() -> None:
    assert c.fixed_ips_or_none([{"ip_address": "2001:DB8::1"}]) == [
        {"ip_address": "2001:db8::1"}]
    _refused(c.fixed_ips_or_none, [{"ip_address": "10.0.0.5"}, {"ip_address": "10.0.0.5"}],
             "Duplicate IP address '10.0.0.5'")
    _refused(c.fixed_ips_or_none, [{"ip_address": "2001:db8::5%eth0"}])


def test_allowed_address_pairs() -> None:
    pairs = c.address_pairs([{"ip_address": "10.0.0.9"},
                             {"ip_address": "10.1.0.0/16", "mac_address": "FA:16:3E:00:00:02"},
                             {"ip_address": "2001:DB8::/64"}])
    assert pairs == [{"ip_address": "10.0.0.9"},
                     {"ip_address": "10.1.0.0/16", "mac_address": "fa:16:3e:00:00:02"},
                     {"ip_address": "2001:db8::/64"}]
    for bad, reason in (
            ([{"mac_address": "fa:16:3e:00:00:02"}], "must contain ip_address"),
            ([{"ip_address": "10.0.0.9", "x": 1}], "Unrecognized attribute(s) 'x'"),
            ([{"ip_address": "10.0.0.300"}], "is not a valid IP address"),
            ([{"ip_address": "10.0.0.0/33"}], "is not a valid IP subnet"),
            ([{"ip_address": "224.0.0.5"}], "multicast"),
            ([{"ip_address": "ff02::/16"}], "multicast"),
            ([{"ip_address": "10.0.0.9", "mac_address": "01:00:5e:00:00:01"}], "multicast"),
            ([{"ip_address": "10.0.0.9"}, {"ip_address": "10.0.0.9"}], "duplicate address pair"),
            ([{"ip_address": f"10.0.0.{i}"} for i in range(11)], "exceeds the maximum 10"),
            ("10.0.0.9", "is not a list"), (["10.0.0.9"], "is not a dictionary")):
        _refused(c.address_pairs, bad, reason)


def test_host_routes_and_nameservers() -> None:
    assert c.host_routes([{"destination": "0.0.0.0/0", "nexthop": "10.0.0.1"}]) == [
        {"destination": "0.0.0.0/0", "nexthop": "10.0.0.1"}]
    for bad, reason in (
            ([{"destination": "10.0.0.5/24", "nexthop": "10.0.0.1"}], "is not a valid CIDR"),
            ([{"destination": "127.0.0.0/8", "nexthop": "10.0.0.1"}], "not a routable CIDR"),
            ([{"destination": "10.1.0.0/16", "nexthop": "nope"}], "is not a valid IP address"),
            ([{"destination": "10.1.0.0/16"}], "Invalid data format"),
            ([{"destination": "10.1.0.0/16", "nexthop": "10.0.0.1"}] * 2, "Duplicate hostroute")):
        _refused(c.host_routes, bad, reason)
    assert c.nameservers(["2001:DB8::53"]) == ["2001:db8::53"]
    _refused(c.nameservers, ["8.8.8.8", "8.8.8.8"], "Duplicate nameserver '8.8.8.8'")
    _refused(c.nameservers, ["dns.example"], "is not a valid nameserver")


def test_ipv6_modes_are_neutrons_values() -> None:
    for mode in ("slaac", "dhcpv6-stateful", "dhcpv6-stateless", None):
        assert c.ipv6_mode(mode) == mode
    _refused(c.ipv6_mode, "SLAAC", "is not in")
    _refused(c.ipv6_mode, "", "is not in")


def test_segmentation_id_in_a_body_is_checked() -> None:
    with pytest.raises(faults.BadRequest) as caught:
        a.validate_body(a.NETWORK, {"provider:segmentation_id": 1.5}, True, "p")
    assert "Invalid input for provider:segmentation_id" in caught.value.message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    | st.sampled_from(["10.0.0.1", "fd00::1%eth0", "fa:16:3e:00:00:01\n", "10.0.0.0/24",
                       "slaac", "normal", "0c8e2c5b-6f1c-4e55-9a3c-0b1d3e0f0a11"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["ip_address", "mac_address", "subnet_id", "start",
                                       "end", "destination", "nexthop", "x"]), inner,
                      max_size=3),
    max_leaves=8)


@pytest.mark.parametrize("spec", [a.NETWORK, a.SUBNET, a.PORT, a.AGENT],
                         ids=["network", "subnet", "port", "agent"])
@hypothesis.settings(max_examples=150, deadline=None, database=None, derandomize=True)
@hypothesis.given(data=st.data())
def test_any_json_is_clean_or_a_400(spec: dict[str, a.Attr], data: st.DataObject) -> None:
    """A small fuzz of every converter: whatever JSON arrives, the answer is a clean
    value or Neutron's 400, never another exception (a 500)."""
    names = sorted(spec)
    body = data.draw(st.dictionaries(st.sampled_from(names), JSON, max_size=4))
    for create in (True, False):
        with contextlib.suppress(faults.BadRequest):
            a.validate_body(spec, body, create, "p")
