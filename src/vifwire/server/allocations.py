"""Fixed IP allocation for a port, inside the port's transaction.

Which subnet and which address: a requested address is checked against its
subnet with Neutron's rules (`ipam.valid_on_subnet`) and taken if free; a port
that names no address gets one per IP version, from the first subnet of that
version with a free address (Neutron tries each in turn). Finding a free one
draws a few random candidates and asks the database which are taken in one
query (see `ipam`), so the common one-subnet network costs one round trip.
Stateless apart from its random source: the (subnet_id, ip_address) primary
key makes two racing allocators collide harmlessly (the transaction retries).
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, union_all

from vifwire.db.fast import Fast
from vifwire.db.schema import ip_allocations, subnets
from vifwire.messages import FixedIp
from vifwire.server import faults, ipam
from vifwire.server._utils import loads

# The default of Neutron's max_fixed_ips_per_port (Neutron has since dropped the
# option): without a limit one request could take a whole pool.
MAX_FIXED_IPS_PER_PORT = 5

_SUBNETS_OF_NETWORK = Fast(select(subnets).where(
    subnets.c.network_id == bindparam("network_id")).order_by(subnets.c.created_at, subnets.c.id))
_USED_IPS = Fast(select(ip_allocations.c.ip_address).where(
    ip_allocations.c.subnet_id == bindparam("subnet_id")))
_IP_TAKEN = Fast(select(ip_allocations.c.port_id).where(
    ip_allocations.c.subnet_id == bindparam("subnet_id"),
    ip_allocations.c.ip_address == bindparam("ip_address")))
# Which of up to ipam.CANDIDATES addresses are taken; unused slots hold "". One
# primary-key probe per candidate (UNION ALL) rather than `subnet_id = ? AND
# ip_address IN (...)`: without statistics on the table (filled faster than
# autovacuum analyses it, or autovacuum off) PostgreSQL planned the IN form as a
# scan of all the subnet's allocations filtered by address, so each port cost more
# as the subnet filled (issue 9: 500 ports in one bulk POST took 3.8 s at first,
# 36 s at 10,000). An equality on the whole key is a unique probe for any planner.
_TAKEN_AMONG = Fast(union_all(*(select(ip_allocations.c.ip_address).where(
    ip_allocations.c.subnet_id == bindparam("subnet_id"),
    ip_allocations.c.ip_address == bindparam(f"c{i}")) for i in range(ipam.CANDIDATES))))
_INSERT_IP = Fast(insert(ip_allocations))


def sort_ips(ips: list[FixedIp]) -> list[FixedIp]:
    """IPv4 first, then by address: the order fixed_ips are rendered in."""
    ips.sort(key=lambda ip: (":" in ip["ip_address"], ip["ip_address"]))
    return ips


class Allocator:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def allocate(self, conn: Connection, network_id: str, port_id: str,
                 requested: list[dict[str, Any]] | None,
                 device_owner: str = "") -> list[FixedIp]:
        """Allocate the port's addresses; returns them as rendered in fixed_ips.

        With no request, one address per IP version: from the first subnet of that
        version that has a free one (Neutron tries each in turn), so the common
        one-subnet network still costs one candidate query.
        """
        rows = list(_SUBNETS_OF_NETWORK.execute(conn, {"network_id": network_id}))
        if requested is not None and len(requested) > MAX_FIXED_IPS_PER_PORT and \
                not device_owner.startswith("network:"):  # Neutron trusts its own ports
            raise faults.InvalidInput("Exceeded maximum amount of fixed ips per port")
        wanted = self._wanted(rows, network_id, requested, device_owner)
        chosen: list[tuple[str, str]] = []
        for choices, address in wanted:
            mine = {ip for _, ip in chosen}
            if address is not None:
                subnet = choices[0]
                if address in mine or _IP_TAKEN.execute(
                        conn, {"subnet_id": subnet.id, "ip_address": address}).first():
                    raise faults.IpAddressInUse(network_id, address)
            else:
                subnet, address = self._first_free(conn, choices, mine)
                if address is None:
                    raise faults.IpAddressGenerationFailure(network_id)
            chosen.append((subnet.id, address))
            _INSERT_IP.execute(conn, {"subnet_id": subnet.id, "ip_address": address,
                                      "port_id": port_id, "network_id": network_id})
        return sort_ips([FixedIp(subnet_id=sid, ip_address=ip) for sid, ip in chosen])

    @staticmethod
    def _wanted(rows: list[Any], network_id: str,
                requested: list[dict[str, Any]] | None,
                device_owner: str) -> list[tuple[list[Any], str | None]]:
        """(subnets to try in order, address or None) per address to allocate."""
        if requested is None:
            by_version = [[s for s in rows if s.ip_version == v] for v in (4, 6)]
            return [(subnets, None) for subnets in by_version if subnets]
        wanted: list[tuple[list[Any], str | None]] = []
        by_id = {s.id: s for s in rows}
        for entry in requested:
            subnet_id, address = entry.get("subnet_id"), entry.get("ip_address")
            ip = None
            if address is not None:
                try:
                    ip = ipam.parse_ip(address)
                except ipam.IpamError as exc:
                    raise faults.InvalidInput(str(exc)) from exc
                address = str(ip)
            if subnet_id is not None:
                subnet = by_id.get(subnet_id)
                if subnet is None:
                    raise faults.InvalidInput(
                        f"Failed to create port on network {network_id}, because "
                        f"fixed_ips included invalid subnet {subnet_id}")
                if ip is not None and not ipam.valid_on_subnet(
                        ipam.network_of(subnet.cidr), ip, device_owner):
                    raise faults.InvalidIpForSubnet(address or "")
            elif ip is not None:
                subnet = next((s for s in rows if ipam.valid_on_subnet(
                    ipam.network_of(s.cidr), ip, device_owner)), None)
                if subnet is None:
                    raise faults.InvalidIpForNetwork(address or "")
            else:
                raise faults.InvalidInput("IP allocation requires subnet_id or ip_address")
            wanted.append(([subnet], address))
        return wanted

    def _first_free(self, conn: Connection, subnets: list[Any],
                    mine: set[str]) -> tuple[Any, str | None]:
        for subnet in subnets:
            address = self._free_address(conn, subnet, mine)
            if address is not None:
                return subnet, address
        return subnets[-1], None

    def _free_address(self, conn: Connection, subnet: Any, mine: set[str]) -> str | None:
        """A free address of the subnet: random candidates checked in one query (see
        `ipam`), widening the draw only when none is free, scanning only a dense pool."""
        pools = loads(subnet.allocation_pools)
        exclude = mine | ({subnet.gateway_ip} if subnet.gateway_ip else set())
        windows = (ipam.WINDOW, None) if ipam.size(pools) > ipam.WINDOW else (None,)
        for window in windows:
            candidates = [c for c in ipam.sample(pools, ipam.CANDIDATES, self.rng, window)
                          if c not in exclude]
            if not candidates:
                continue
            params = {f"c{i}": candidates[i] if i < len(candidates) else ""
                      for i in range(ipam.CANDIDATES)}
            taken = set(_TAKEN_AMONG.execute(conn, {"subnet_id": subnet.id, **params})
                        .scalars())
            free = [c for c in candidates if c not in taken]
            if free:
                return self.rng.choice(free)
        used = set(_USED_IPS.execute(conn, {"subnet_id": subnet.id}).scalars()) | exclude
        return ipam.pick(pools, used, self.rng)

