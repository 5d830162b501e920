"""IPAM's candidate draw (pure): inside the pools, distinct, low window first."""

from __future__ import annotations

import ipaddress
import random

from vifwire.server import ipam


def test_sample_draws_distinct_addresses_from_the_pools_only() -> None:
    pools = [ipam.Pool(start="10.0.0.2", end="10.0.0.5"),
             ipam.Pool(start="10.0.0.200", end="10.0.0.254")]
    rng = random.Random(7)
    for _ in range(50):
        drawn = ipam.sample(pools, ipam.CANDIDATES, rng)
        assert len(drawn) == len(set(drawn)) == ipam.CANDIDATES
        for address in drawn:
            value = int(ipaddress.ip_address(address))
            assert 2 <= value - int(ipaddress.ip_address("10.0.0.0")) <= 5 or \
                200 <= value - int(ipaddress.ip_address("10.0.0.0")) <= 254


def test_sample_of_a_small_pool_is_the_whole_pool() -> None:
    pools = [ipam.Pool(start="10.0.0.2", end="10.0.0.6")]
    assert sorted(ipam.sample(pools, 16, random.Random(1))) == [
        f"10.0.0.{i}" for i in range(2, 7)]


def test_window_keeps_the_draw_to_the_first_addresses() -> None:
    pools = [ipam.Pool(start="10.0.0.1", end="10.0.255.254")]  # a /16
    drawn = ipam.sample(pools, 16, random.Random(3), window=ipam.WINDOW)
    first, limit = int(ipaddress.ip_address("10.0.0.1")), ipam.WINDOW
    assert all(0 <= int(ipaddress.ip_address(a)) - first < limit for a in drawn)
    assert ipam.size(pools) == 65534


def test_v6_pools_of_any_size() -> None:
    pools = [ipam.Pool(start="fd00::2", end="fd00::ffff:ffff:ffff:ffff")]
    drawn = ipam.sample(pools, 16, random.Random(5))
    assert len(set(drawn)) == 16
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("fd00::/64") for a in drawn)
