"""The tables, in SQLAlchemy Core, portable across SQLite, PostgreSQL and MySQL.

Invariants the database itself enforces (so several server processes can race):
- an address is handed out once per subnet: PK (subnet_id, ip_address);
- a MAC is unique per network: UNIQUE (network_id, mac_address);
- a segmentation id is unique per (type, physnet): UNIQUE (network_type,
  segment_physnet, segmentation_id). `segment_physnet` is "" rather than NULL for
  tunnel types because NULLs never collide in a unique constraint;
- one Nova event per port transition: the outbox key names the transition;
- a tag appears once per resource: PK (resource_id, tag);
- one default security group per project: PK default_security_groups.project_id
  (two servers making it at once: the loser retries and finds the winner's);
- a group bound to a port cannot be deleted: FK from security_group_port_bindings
  (no ON DELETE), while the binding goes with its port (ON DELETE CASCADE), as
  do a group's rules and the rules that name it as their remote group.

`ports.security_groups` keeps the port's group ids as rendered (orjson, in the
order asked for); `security_group_port_bindings` holds the same pairs, written in
the same transaction, for what must be indexed: groups in use, members of a group.

JSON-ish attributes (pools, dns servers, vif details...) are Text holding orjson.
Timestamps are naive UTC datetimes.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(36)


def _standard() -> list[Column]:
    return [
        Column("project_id", String(255), nullable=False),
        Column("name", String(255), nullable=False, default=""),
        Column("description", String(255), nullable=False, default=""),
        Column("created_at", DateTime, nullable=False),
        Column("updated_at", DateTime, nullable=False),
        Column("revision_number", Integer, nullable=False, default=0),
    ]


networks = Table(
    "networks",
    metadata,
    Column("id", ID, primary_key=True),
    *_standard(),
    Column("admin_state_up", Boolean, nullable=False),
    Column("shared", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("mtu", Integer, nullable=False),
    Column("port_security_enabled", Boolean, nullable=False),
    Column("network_type", String(32), nullable=False),
    Column("segment_physnet", String(64), nullable=False),
    Column("segmentation_id", Integer, nullable=True),
    # external-net: router:external (admin-set; visible to every project).
    Column("router_external", Boolean, nullable=False, default=False),
    UniqueConstraint(
        "network_type", "segment_physnet", "segmentation_id", name="uq_networks_segment"
    ),
    Index("ix_networks_project_id", "project_id"),
)

subnets = Table(
    "subnets",
    metadata,
    Column("id", ID, primary_key=True),
    *_standard(),
    Column("network_id", ID, ForeignKey("networks.id", ondelete="CASCADE"), nullable=False),
    Column("ip_version", Integer, nullable=False),
    Column("cidr", String(64), nullable=False),
    Column("gateway_ip", String(64), nullable=True),
    Column("enable_dhcp", Boolean, nullable=False),
    Column("allocation_pools", Text, nullable=False),
    Column("dns_nameservers", Text, nullable=False),
    Column("host_routes", Text, nullable=False),
    Column("ipv6_ra_mode", String(32), nullable=True),
    Column("ipv6_address_mode", String(32), nullable=True),
    # The pool it was carved from (no foreign key: a pool in use refuses delete).
    Column("subnetpool_id", ID, nullable=True),
    Index("ix_subnets_network_id", "network_id"),
    Index("ix_subnets_project_id", "project_id"),
)

ports = Table(
    "ports",
    metadata,
    Column("id", ID, primary_key=True),
    *_standard(),
    Column("network_id", ID, ForeignKey("networks.id"), nullable=False),
    Column("mac_address", String(32), nullable=False),
    Column("admin_state_up", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("device_id", String(255), nullable=False),
    Column("device_owner", String(255), nullable=False),
    Column("port_security_enabled", Boolean, nullable=False),
    Column("security_groups", Text, nullable=False),
    Column("allowed_address_pairs", Text, nullable=False),
    Column("binding_host", String(255), nullable=False),
    Column("binding_vif_type", String(64), nullable=False),
    Column("binding_vif_details", Text, nullable=False),
    Column("binding_vnic_type", String(64), nullable=False),
    Column("binding_profile", Text, nullable=False),
    # extra_dhcp_opt: [{opt_name, opt_value, ip_version}] as rendered; NULL: none.
    Column("extra_dhcp_opts", Text, nullable=True),
    UniqueConstraint("network_id", "mac_address", name="uq_ports_network_mac"),
    Index("ix_ports_device_id", "device_id"),
    Index("ix_ports_project_id", "project_id"),
    Index("ix_ports_binding_host", "binding_host"),
)

ip_allocations = Table(
    "ip_allocations",
    metadata,
    Column("subnet_id", ID, ForeignKey("subnets.id", ondelete="CASCADE"), primary_key=True),
    Column("ip_address", String(64), primary_key=True),
    Column("port_id", ID, ForeignKey("ports.id", ondelete="CASCADE"), nullable=False),
    Column("network_id", ID, nullable=False),
    Index("ix_ip_allocations_port_id", "port_id"),
)

agents = Table(
    "agents",
    metadata,
    Column("id", ID, primary_key=True),
    Column("agent_type", String(255), nullable=False),
    Column("binary", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("configurations", Text, nullable=False),
    Column("admin_state_up", Boolean, nullable=False),
    Column("description", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("heartbeat_timestamp", DateTime, nullable=False),
    UniqueConstraint("agent_type", "host", name="uq_agents_type_host"),
)

# Tags of networks, subnets and ports; ids are UUIDs, unique across resource types.
tags = Table(
    "tags",
    metadata,
    Column("resource_id", ID, primary_key=True),
    Column("tag", String(60), primary_key=True),
    Column("resource_type", String(16), nullable=False),
)

nova_outbox = Table(
    "nova_outbox",
    metadata,
    # "<port_id>:<event name>:<port revision>": one row per transition, ever.
    Column("key", String(128), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("server_uuid", String(255), nullable=False),
    Column("tag", ID, nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

security_groups = Table(
    "security_groups",
    metadata,
    Column("id", ID, primary_key=True),
    *_standard(),
    Column("stateful", Boolean, nullable=False),
    Index("ix_security_groups_project_id", "project_id"),
)

# Which group is each project's `default` (Neutron's default_security_group table).
default_security_groups = Table(
    "default_security_groups",
    metadata,
    Column("project_id", String(255), primary_key=True),
    Column("security_group_id", ID, ForeignKey("security_groups.id", ondelete="CASCADE"),
           nullable=False),
)

security_group_rules = Table(
    "security_group_rules",
    metadata,
    Column("id", ID, primary_key=True),
    Column("project_id", String(255), nullable=False),
    Column("description", String(255), nullable=False, default=""),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("revision_number", Integer, nullable=False, default=0),
    Column("security_group_id", ID, ForeignKey("security_groups.id", ondelete="CASCADE"),
           nullable=False),
    Column("remote_group_id", ID, ForeignKey("security_groups.id", ondelete="CASCADE"),
           nullable=True),
    Column("direction", String(16), nullable=False),
    Column("ethertype", String(8), nullable=False),
    Column("protocol", String(40), nullable=True),
    Column("port_range_min", Integer, nullable=True),
    Column("port_range_max", Integer, nullable=True),
    Column("remote_ip_prefix", String(255), nullable=True),
    Index("ix_security_group_rules_security_group_id", "security_group_id"),
    Index("ix_security_group_rules_remote_group_id", "remote_group_id"),
    Index("ix_security_group_rules_project_id", "project_id"),
)

security_group_port_bindings = Table(
    "security_group_port_bindings",
    metadata,
    Column("port_id", ID, ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True),
    Column("security_group_id", ID, ForeignKey("security_groups.id"), primary_key=True),
    Index("ix_security_group_port_bindings_security_group_id", "security_group_id"),
)

# Per-project limits that differ from the defaults (Settings.quota_*); no row: the
# default. Usage is counted from the resources' own tables, inside the creating
# transaction (vifwire.server.quotas).
quotas = Table(
    "quotas",
    metadata,
    Column("project_id", String(255), primary_key=True),
    Column("resource", String(255), primary_key=True),
    Column("limit", Integer, nullable=False),
)

# subnet_allocation: pools of prefixes subnets are carved from.
subnetpools = Table(
    "subnetpools",
    metadata,
    Column("id", ID, primary_key=True),
    *_standard(),
    Column("ip_version", Integer, nullable=False),
    Column("prefixes", Text, nullable=False),  # orjson list of CIDRs, canonical
    Column("default_prefixlen", Integer, nullable=False),
    Column("min_prefixlen", Integer, nullable=False),
    Column("max_prefixlen", Integer, nullable=False),
    Column("shared", Boolean, nullable=False),
    Column("is_default", Boolean, nullable=False),
    Column("default_quota", Integer, nullable=True),
    Index("ix_subnetpools_project_id", "project_id"),
)
