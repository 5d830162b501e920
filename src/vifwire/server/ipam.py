"""IP address management arithmetic. Pure: no I/O, the caller passes what is used.

Pools are lists of {"start": str, "end": str}, inclusive, like Neutron's API.

Allocation must not cost more as a subnet fills, so the caller does not load
every used address: it draws a few random candidates (`sample`), first from the
pools' first WINDOW addresses (low addresses first, as Neutron's IPAM does), asks
the database which of those are taken, and takes a free one at random. Only
when a draw finds none free does it widen the draw, and only a dense pool ends in
the full scan (`pick`). Random choice also keeps concurrent allocators (several
server processes) apart; the (subnet_id, ip_address) primary key and a retry
make a collision harmless.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import random
from collections.abc import Iterable, Iterator
from typing import TypedDict

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# How many free candidates to choose from: wide enough to spread racers out.
CANDIDATES = 16
# The first draw's window: the pools' first addresses, like Neutron's IPAM window.
WINDOW = 1024


class IpamError(ValueError):
    """An invalid CIDR, gateway or pool; the message is user-facing."""


class Pool(TypedDict):
    start: str
    end: str


def parse_cidr(cidr: str, ip_version: int, dhcp: bool = False) -> IPNetwork:
    """The subnet's network, or IpamError; `dhcp` adds Neutron's DHCP-only refusals."""
    try:
        if "%" in cidr:  # a zone is no part of a subnet
            raise ValueError(cidr)
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise IpamError(f"'{cidr}' isn't a recognized IP subnet cidr, '"
                            f"{ipaddress.ip_network(cidr, strict=False)}' is recommended") from exc
        raise IpamError(f"'{cidr}' is not a valid IP subnet") from exc
    if network.version != ip_version:
        raise IpamError(f"Cidr {cidr} does not match the ip_version {ip_version}")
    if network.prefixlen == 0:
        raise IpamError("0 is not allowed as CIDR prefix length")
    if network.version == 6 and int(network.network_address) == 0:
        raise IpamError("IPv6 subnet '::' is not supported")
    if dhcp:
        check_dhcp(network)
    if network.num_addresses < (4 if ip_version == 4 else 2):
        raise IpamError(f"Cidr {cidr} is too small for a subnet")
    return network


def check_dhcp(network: IPNetwork) -> None:
    """Neutron's refusals for a subnet with DHCP enabled (on create, or when enabled)."""
    if network.prefixlen > (30 if network.version == 4 else 126):
        raise IpamError("Subnet has a prefix length that is incompatible with DHCP service "
                        "enabled")
    if network.is_multicast:
        raise IpamError("Multicast IP subnet is not supported if enable_dhcp is True")
    if network.is_loopback:
        raise IpamError("Loopback IP subnet is not supported if enable_dhcp is True")
    if network.version == 4 and int(network.network_address) == 0:
        raise IpamError("First IP '0.0.0.0' of network is not supported if enable_dhcp is True")


@functools.lru_cache(maxsize=1024)
def network_of(cidr: str) -> IPNetwork:
    """A stored (valid, canonical) CIDR as a network; cached, subnets are few."""
    return ipaddress.ip_network(cidr)


def parse_ip(value: str) -> IPAddress:
    try:
        if "%" in value:  # `fe80::1%eth0` would be one more spelling of one address
            raise ValueError(value)
        return ipaddress.ip_address(value)
    except ValueError as exc:
        raise IpamError(f"'{value}' is not a valid IP address") from exc


# Owners that may hold an IPv6 subnet's subnet-router anycast address (neutron-lib's
# ROUTER_PORT_OWNERS).
ROUTER_OWNERS = frozenset({"network:router_interface", "network:router_gateway",
                           "network:router_interface_distributed",
                           "network:ha_router_replicated_interface",
                           "network:router_centralized_snat"})


def valid_on_subnet(network: IPNetwork, address: IPAddress, device_owner: str = "") -> bool:
    """Neutron's check_subnet_ip: inside the subnet, never an IPv4 network or broadcast
    address, and the IPv6 subnet-router anycast address only for a router port."""
    if address.version != network.version or address not in network:
        return False
    if network.version == 4:
        return address not in (network.network_address, network.broadcast_address)
    return address != network.network_address or device_owner in ROUTER_OWNERS


def _usable(network: IPNetwork) -> tuple[int, int]:
    """First and last assignable address as ints (v4 drops network and broadcast)."""
    first, last = int(network.network_address), int(network.broadcast_address)
    return (first + 1, last - 1) if network.version == 4 else (first + 1, last)


def default_gateway(network: IPNetwork) -> str:
    return str(network[1])


def validate_gateway(network: IPNetwork, gateway: str) -> str:
    address = parse_ip(gateway)
    if address.version != network.version or address not in network:
        raise IpamError(f"Gateway ip {gateway} is not in subnet {network}")
    if network.version == 4 and address in (network.network_address, network.broadcast_address):
        raise IpamError("Gateway is not valid on subnet")
    return str(address)


def default_pools(network: IPNetwork, gateway: str | None) -> list[Pool]:
    first, last = _usable(network)
    ranges = [(first, last)]
    if gateway is not None:
        g = int(ipaddress.ip_address(gateway))
        ranges = [(a, b) for a, b in ((first, g - 1), (g + 1, last)) if a <= b] \
            if first <= g <= last else ranges
    cls = type(network.network_address)
    return [Pool(start=str(cls(a)), end=str(cls(b))) for a, b in ranges]


def validate_pools(network: IPNetwork, pools: list[Pool], gateway: str | None) -> list[Pool]:
    """Normalized pools, or IpamError if outside the CIDR, overlapping or holding the gateway."""
    first, last = _usable(network)
    spans: list[tuple[int, int]] = []
    for pool in pools:
        start, end = parse_ip(pool["start"]), parse_ip(pool["end"])
        if start.version != network.version or end.version != network.version:
            raise IpamError(f"Allocation pool {pool['start']} - {pool['end']} has the wrong "
                            "IP version")
        a, b = int(start), int(end)
        if a > b:
            raise IpamError(f"Allocation pool {start} - {end}: start is after end")
        if a < first or b > last:
            raise IpamError(f"The allocation pool {start}-{end} spans beyond the subnet cidr "
                            f"{network}.")
        spans.append((a, b))
    spans.sort()
    for (a1, b1), (a2, _b2) in itertools.pairwise(spans):
        if a2 <= b1:
            raise IpamError("Found overlapping allocation pools: "
                            f"{ipaddress.ip_address(a1)}-{ipaddress.ip_address(b1)} and "
                            f"{ipaddress.ip_address(a2)}")
    if gateway is not None:
        g = int(ipaddress.ip_address(gateway))
        if any(a <= g <= b for a, b in spans):
            raise IpamError(f"Gateway ip {gateway} conflicts with allocation pool")
    cls = type(network.network_address)
    return [Pool(start=str(cls(a)), end=str(cls(b))) for a, b in spans]


def overlaps(cidr: str, others: Iterable[str]) -> str | None:
    """The first of `others` overlapping `cidr`, if any."""
    network = ipaddress.ip_network(cidr)
    for other in others:
        candidate = ipaddress.ip_network(other)
        if candidate.version == network.version and candidate.overlaps(network):
            return other
    return None


def _free(pools: list[Pool], used: set[str]) -> Iterator[str]:
    for pool in pools:
        start, end = ipaddress.ip_address(pool["start"]), ipaddress.ip_address(pool["end"])
        cls = type(start)
        for value in range(int(start), int(end) + 1):
            text = str(cls(value))
            if text not in used:
                yield text


def _spans(pools: list[Pool]) -> list[tuple[int, int, type[IPAddress]]]:
    spans = []
    for pool in pools:
        start, end = ipaddress.ip_address(pool["start"]), ipaddress.ip_address(pool["end"])
        spans.append((int(start), int(end), type(start)))
    return spans


def size(pools: list[Pool]) -> int:
    return sum(end - start + 1 for start, end, _ in _spans(pools))


def sample(pools: list[Pool], count: int, rng: random.Random,
           window: int | None = None) -> list[str]:
    """Up to `count` distinct random addresses among the pools' first `window`
    addresses (all of them when None), without regard to what is used."""
    spans = _spans(pools)
    size = sum(end - start + 1 for start, end, _ in spans)
    if window is not None:
        size = min(size, window)
    if size <= 0:
        return []
    if size <= count:
        offsets = list(range(size))
    else:
        chosen: set[int] = set()
        while len(chosen) < count:
            chosen.add(rng.randrange(size))
        offsets = list(chosen)
    found = []
    for offset in offsets:
        for start, end, cls in spans:
            if offset <= end - start:
                found.append(str(cls(start + offset)))
                break
            offset -= end - start + 1
    return found


def pick(pools: list[Pool], used: set[str], rng: random.Random | None = None) -> str | None:
    """A free address from the pools, or None when they are exhausted."""
    candidates = []
    for address in _free(pools, used):
        candidates.append(address)
        if len(candidates) >= CANDIDATES:
            break
    if not candidates:
        return None
    return (rng or random).choice(candidates)


def normalize_ip(address: str) -> str:
    return str(parse_ip(address))


def carve(prefixes: list[IPNetwork], taken: list[IPNetwork], prefixlen: int) -> IPNetwork | None:
    """The first block of `prefixlen` inside one of `prefixes` that overlaps nothing in
    `taken` (a subnet pool's allocation), or None. Jumps past each taken block, so it
    costs about one step per taken block, not one per candidate."""
    for prefix in prefixes:
        if prefixlen < prefix.prefixlen or prefixlen > prefix.max_prefixlen:
            continue
        step = 1 << (prefix.max_prefixlen - prefixlen)
        at, end = int(prefix.network_address), int(prefix.broadcast_address)
        while at + step - 1 <= end:
            candidate = ipaddress.ip_network((at, prefixlen))
            hit = next((t for t in taken if t.version == candidate.version
                        and t.overlaps(candidate)), None)  # type: ignore[arg-type]
            if hit is None:
                return candidate
            after = int(hit.broadcast_address) + 1
            at = max(at + step, -(-after // step) * step)
    return None
