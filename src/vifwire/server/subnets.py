"""Subnets: CIDR, gateway and allocation pools, validated by the pure IPAM module.

Neutron's _validate_subnet rules: with DHCP enabled (the default) no multicast,
loopback or 0.0.0.0 network and no prefix longer than /30 (IPv4) or /126 (IPv6);
without it a /127 is taken, its one address being the gateway (an empty pool).
Nameservers and host routes are counted and must match the IP version; IPv6
RA and address modes must agree with each other, with DHCP and with a /64.
"""

from __future__ import annotations

import builtins
import ipaddress
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select, update

from vifwire.db.schema import ip_allocations, ports, subnets
from vifwire.server import faults, ipam, quotas, subnetpools
from vifwire.server._db import read, run_transaction
from vifwire.server._query import Filters, matches, where
from vifwire.server._utils import dumps, iso, loads, new_id, utcnow
from vifwire.server.context import Context
from vifwire.server.networks import get_row as get_network_row
from vifwire.server.tags import delete_tags
from vifwire.server.visibility import scoped

COLUMNS = {
    "id": subnets.c.id,
    "name": subnets.c.name,
    "description": subnets.c.description,
    "project_id": subnets.c.project_id,
    "tenant_id": subnets.c.project_id,
    "network_id": subnets.c.network_id,
    "ip_version": subnets.c.ip_version,
    "cidr": subnets.c.cidr,
    "gateway_ip": subnets.c.gateway_ip,
    "enable_dhcp": subnets.c.enable_dhcp,
    "ipv6_ra_mode": subnets.c.ipv6_ra_mode,
    "ipv6_address_mode": subnets.c.ipv6_address_mode,
    "revision_number": subnets.c.revision_number,
    "subnetpool_id": subnets.c.subnetpool_id,
}


def render(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "network_id": row.network_id,
        "ip_version": row.ip_version,
        "cidr": row.cidr,
        "gateway_ip": row.gateway_ip,
        "allocation_pools": loads(row.allocation_pools),
        "dns_nameservers": loads(row.dns_nameservers),
        "host_routes": loads(row.host_routes),
        "enable_dhcp": row.enable_dhcp,
        "ipv6_ra_mode": row.ipv6_ra_mode,
        "ipv6_address_mode": row.ipv6_address_mode,
        "subnetpool_id": row.subnetpool_id,
        "service_types": [],
        "segment_id": None,
        "tags": [],
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "revision_number": row.revision_number,
    }


def get_row(conn: Connection, subnet_id: str) -> Any:
    row = conn.execute(select(subnets).where(subnets.c.id == subnet_id)).first()
    if row is None:
        raise faults.SubnetNotFound(subnet_id)
    return row


# Neutron's defaults for max_dns_nameservers and max_subnet_host_routes.
MAX_DNS_NAMESERVERS = 5
MAX_HOST_ROUTES = 20
AUTO_ADDRESS_MODES = ("slaac", "dhcpv6-stateless")


class _Exhausted(faults.BadRequest):
    what = ""

    def __init__(self, subnet_id: str, quota: int) -> None:
        super().__init__(f"Unable to complete operation for {subnet_id}. The number of "
                         f"{self.what} exceeds the limit {quota}.")


class HostRoutesExhausted(_Exhausted):
    type, what = "HostRoutesExhausted", "host routes"


class DNSNameServersExhausted(_Exhausted):
    type, what = "DNSNameServersExhausted", "DNS nameservers"


def _pool_of(conn: Connection, body: dict[str, Any], ip_version: int) -> Any:
    """The subnet pool a new subnet is carved from, if it names one."""
    if body.get("subnetpool_id"):
        pool = subnetpools.get_row(conn, body["subnetpool_id"])
        if pool.ip_version != ip_version:
            raise faults.BadRequest(f"Cannot allocate IPv{ip_version} subnet from IPv"
                                    f"{pool.ip_version} subnet pool")
        return pool
    if body.get("use_default_subnetpool"):
        return subnetpools.default_pool(conn, ip_version)
    if body.get("prefixlen") is not None:
        raise faults.BadRequest("prefixlen requires a subnetpool_id or "
                                "use_default_subnetpool")
    return None


def _invalid(exc: ipam.IpamError) -> faults.InvalidInput:
    return faults.InvalidInput(str(exc))


def _same_version(name: str, address: str, ip_version: int) -> None:
    if ipaddress.ip_interface(address).version != ip_version:
        raise faults.InvalidInput(f"{name} '{address}' does not match the ip_version "
                                  f"'{ip_version}'")


def _check_lists(body: dict[str, Any], ip_version: int, subnet_id: str) -> None:
    """Neutron's _validate_subnet for nameservers and host routes: counts and versions."""
    dns = body.get("dns_nameservers") or []
    if len(dns) > MAX_DNS_NAMESERVERS:
        raise DNSNameServersExhausted(subnet_id, MAX_DNS_NAMESERVERS)
    for address in dns:
        _same_version("dns_nameserver", address, ip_version)
    routes = body.get("host_routes") or []
    if len(routes) > MAX_HOST_ROUTES:
        raise HostRoutesExhausted(subnet_id, MAX_HOST_ROUTES)
    for route in routes:
        _same_version("nexthop", route["nexthop"], ip_version)
        _same_version("destination", route["destination"], ip_version)


def _check_ipv6_modes(body: dict[str, Any], network: ipam.IPNetwork, dhcp: bool) -> None:
    """Neutron's rules for ipv6_ra_mode / ipv6_address_mode on create."""
    ra, address = body.get("ipv6_ra_mode"), body.get("ipv6_address_mode")
    if network.version == 4:
        for name, value in (("ipv6_ra_mode", ra), ("ipv6_address_mode", address)):
            if value is not None:
                raise faults.InvalidInput(f"{name} is not valid when ip_version is 4")
        return
    if (ra or address) and not dhcp:
        raise faults.InvalidInput("ipv6_ra_mode or ipv6_address_mode cannot be set when "
                                  "enable_dhcp is set to False")
    if ra and address and ra != address:
        raise faults.InvalidInput(
            f"ipv6_ra_mode set to '{ra}' with ipv6_address_mode set to '{address}' is not "
            "valid. If both attributes are set, they must be the same value")
    auto = address in AUTO_ADDRESS_MODES or (address is None and ra in AUTO_ADDRESS_MODES)
    if auto and network.prefixlen != 64:
        raise faults.InvalidInput(
            f"Invalid CIDR {network} for IPv6 address mode. OpenStack uses the EUI-64 "
            "address format, which requires the prefix to be /64")


class SubnetService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def show(self, subnet_id: str) -> dict[str, Any]:
        return render(read(self.ctx.engine, lambda conn: get_row(conn, subnet_id)))

    def list(self, filters: Filters,
             visible_to: str | None = None) -> builtins.list[dict[str, Any]]:
        stmt, rest = where(scoped(select(subnets), "subnets", visible_to), COLUMNS, filters)
        stmt = stmt.order_by(subnets.c.created_at, subnets.c.id)
        rows = read(self.ctx.engine, lambda conn: list(conn.execute(stmt)))
        return [s for s in map(render, rows) if matches(s, rest)]

    async def create(self, bodies: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        def work(conn: Connection) -> builtins.list[dict[str, Any]]:
            return [render(get_row(conn, self._insert(conn, body))) for body in bodies]
        return await run_transaction(self.ctx.engine, work)

    def _insert(self, conn: Connection, body: dict[str, Any]) -> str:
        network_id = body["network_id"]
        get_network_row(conn, network_id)
        quotas.check(conn, self.ctx, body["project_id"], "subnet")
        ip_version = body["ip_version"]
        dhcp = body.get("enable_dhcp", True)
        pool = _pool_of(conn, body, ip_version)
        if pool is not None:
            body = {**body, "cidr": subnetpools.allocate(conn, pool, body.get("cidr"),
                                                         body.get("prefixlen"))}
        elif "cidr" not in body:
            raise faults.BadRequest("Bad subnets request: a subnetpool must be specified in "
                                    "the absence of a cidr.")
        try:
            network = ipam.parse_cidr(body["cidr"], ip_version, dhcp)
            cidr = str(network)
            if "gateway_ip" in body:
                gateway = body["gateway_ip"]
                gateway = ipam.validate_gateway(network, gateway) if gateway else None
            else:
                gateway = ipam.default_gateway(network)
            pools = body.get("allocation_pools")
            if pools is None:
                pools = ipam.default_pools(network, gateway)
            else:
                pools = ipam.validate_pools(network, pools, gateway)
            dns = [ipam.normalize_ip(d) for d in body.get("dns_nameservers", [])]
        except ipam.IpamError as exc:
            raise _invalid(exc) from exc
        _check_lists(body, ip_version, "new subnet")
        _check_ipv6_modes(body, network, dhcp)
        others = conn.execute(select(subnets.c.cidr).where(subnets.c.network_id == network_id))
        if ipam.overlaps(cidr, others.scalars()) is not None:
            raise faults.InvalidInput(f"Requested subnet with cidr: {cidr} for network: "
                                      f"{network_id} overlaps with another subnet")
        now = utcnow()
        subnet_id = new_id()
        conn.execute(insert(subnets).values(
            id=subnet_id, project_id=body["project_id"], name=body.get("name", ""),
            description=body.get("description", ""), created_at=now, updated_at=now,
            revision_number=1, network_id=network_id, ip_version=ip_version, cidr=cidr,
            gateway_ip=gateway, enable_dhcp=dhcp,
            allocation_pools=dumps(pools), dns_nameservers=dumps(dns),
            host_routes=dumps(body.get("host_routes", [])),
            ipv6_ra_mode=body.get("ipv6_ra_mode"), ipv6_address_mode=body.get("ipv6_address_mode"),
            subnetpool_id=None if pool is None else pool.id,
        ))
        return subnet_id

    async def update(self, subnet_id: str, body: dict[str, Any],
               if_revision: int | None = None) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            row = get_row(conn, subnet_id)
            if if_revision is not None and row.revision_number != if_revision:
                raise faults.RevisionNumberConstraintFailed(if_revision, row.revision_number)
            values: dict[str, Any] = {k: body[k] for k in
                                      ("name", "description", "enable_dhcp") if k in body}
            _check_lists(body, row.ip_version, subnet_id)
            if body.get("enable_dhcp") is False and (row.ipv6_ra_mode or
                                                     row.ipv6_address_mode):
                raise faults.InvalidInput("Cannot disable enable_dhcp with ipv6 attributes set")
            try:
                network = ipam.parse_cidr(row.cidr, row.ip_version)
                if body.get("enable_dhcp") and not row.enable_dhcp:
                    ipam.check_dhcp(network)
                gateway = row.gateway_ip
                if "gateway_ip" in body:
                    gateway = body["gateway_ip"]
                    gateway = ipam.validate_gateway(network, gateway) if gateway else None
                    values["gateway_ip"] = gateway
                if "allocation_pools" in body or "gateway_ip" in body:
                    pools = body.get("allocation_pools", loads(row.allocation_pools))
                    values["allocation_pools"] = dumps(
                        ipam.validate_pools(network, pools, gateway))
                if "dns_nameservers" in body:
                    values["dns_nameservers"] = dumps(
                        [ipam.normalize_ip(d) for d in body["dns_nameservers"]])
            except ipam.IpamError as exc:
                raise _invalid(exc) from exc
            if "host_routes" in body:
                values["host_routes"] = dumps(body["host_routes"])
            conn.execute(update(subnets).where(subnets.c.id == subnet_id).values(
                **values, updated_at=utcnow(), revision_number=subnets.c.revision_number + 1))
            return render(get_row(conn, subnet_id))
        return await run_transaction(self.ctx.engine, work)

    async def delete(self, subnet_id: str) -> None:
        def work(conn: Connection) -> None:
            row = get_row(conn, subnet_id)
            if row.ipv6_address_mode in AUTO_ADDRESS_MODES or \
                    row.ipv6_ra_mode in AUTO_ADDRESS_MODES:
                # Neutron: auto-addressed ports lose the address with the subnet
                # (router ports keep it and keep the subnet in use).
                routers = select(ports.c.id).where(ports.c.device_owner.in_(ipam.ROUTER_OWNERS))
                conn.execute(delete(ip_allocations).where(
                    ip_allocations.c.subnet_id == subnet_id,
                    ip_allocations.c.port_id.not_in(routers)))
            used = conn.execute(select(exists().where(
                ip_allocations.c.subnet_id == subnet_id))).scalar()
            if used:
                raise faults.SubnetInUse(subnet_id)
            delete_tags(conn, [subnet_id])
            conn.execute(delete(subnets).where(subnets.c.id == subnet_id))
        await run_transaction(self.ctx.engine, work)
