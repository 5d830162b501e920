"""The free-address check stays a primary-key probe however full the subnet is,
even on a PostgreSQL table that was never analysed (issue 9: bulk creates slowed
from 3.8 s to 36 s per 500 ports as a /16 filled)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import Engine, create_engine, insert, text

from vifwire.db.schema import ip_allocations, metadata, networks, ports, subnets
from vifwire.server import allocations, ipam

pytestmark = pytest.mark.postgres
FILLED = 3000


@pytest.fixture
def filled(pg_url: str) -> Iterator[Engine]:
    """One subnet holding FILLED allocations, no ANALYZE (as autovacuum-off, or a
    table filled within a minute)."""
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        metadata.create_all(conn)
        now = datetime(2026, 12, 1)
        common = {"project_id": "p", "name": "", "description": "", "revision_number": 1,
                  "created_at": now, "updated_at": now}
        conn.execute(insert(networks).values(
            id="n", admin_state_up=True, shared=False, status="ACTIVE", mtu=1500,
            port_security_enabled=True, network_type="vxlan", segment_physnet="",
            segmentation_id=1, **common))
        conn.execute(insert(subnets).values(
            id="s", network_id="n", ip_version=4, cidr="10.16.0.0/16", gateway_ip=None,
            enable_dhcp=True, allocation_pools="[]", dns_nameservers="[]", host_routes="[]",
            **common))
        conn.execute(insert(ports), [dict(
            id=f"p{i}", network_id="n", mac_address=f"m{i}", admin_state_up=True,
            status="DOWN", device_id="", device_owner="", port_security_enabled=True,
            security_groups="[]", allowed_address_pairs="[]", binding_host="",
            binding_vif_type="unbound", binding_vif_details="{}", binding_vnic_type="normal",
            binding_profile="{}", **common) for i in range(FILLED)])
        conn.execute(insert(ip_allocations), [
            {"subnet_id": "s", "ip_address": f"10.16.{i // 250}.{i % 250 + 1}",
             "port_id": f"p{i}", "network_id": "n"} for i in range(FILLED)])
    yield engine
    engine.dispose()


def test_taken_among_candidates_reads_only_the_candidates(filled: Engine) -> None:
    candidates = {f"c{i}": f"10.16.{i}.{i + 7}" for i in range(ipam.CANDIDATES)}
    statement = allocations._TAKEN_AMONG.statement
    with filled.connect() as conn:
        sql = str(statement.compile(dialect=conn.dialect,
                                    compile_kwargs={"render_postcompile": True}))
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(
            f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", {"subnet_id": "s", **candidates}))
    assert "Rows Removed by Filter" not in plan, plan
    assert plan.count("pk_ip_allocations") == ipam.CANDIDATES, plan
