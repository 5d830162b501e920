"""quotas, subnet pools, router:external, extra DHCP options, project indexes

Revision ID: 0004_quotas_extensions
Revises: 0003_security_groups
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_quotas_extensions"
down_revision = "0003_security_groups"
branch_labels = None
depends_on = None

# Quotas count a project's rows on every create: each table gets an index on it.
_PROJECT_INDEXES = ("networks", "subnets", "ports", "security_groups",
                    "security_group_rules")


def upgrade() -> None:
    op.create_table(
        "quotas",
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=255), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "resource", name=op.f("pk_quotas")),
    )
    op.create_table(
        "subnetpools",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        sa.Column("prefixes", sa.Text(), nullable=False),
        sa.Column("default_prefixlen", sa.Integer(), nullable=False),
        sa.Column("min_prefixlen", sa.Integer(), nullable=False),
        sa.Column("max_prefixlen", sa.Integer(), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("default_quota", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subnetpools")),
    )
    op.create_index("ix_subnetpools_project_id", "subnetpools", ["project_id"])
    op.add_column("networks", sa.Column("router_external", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    op.add_column("subnets", sa.Column("subnetpool_id", sa.String(length=36), nullable=True))
    op.add_column("ports", sa.Column("extra_dhcp_opts", sa.Text(), nullable=True))
    for table in _PROJECT_INDEXES:
        op.create_index(f"ix_{table}_project_id", table, ["project_id"])


def downgrade() -> None:
    for table in _PROJECT_INDEXES:
        op.drop_index(f"ix_{table}_project_id", table_name=table)
    with op.batch_alter_table("ports") as batch_op:
        batch_op.drop_column("extra_dhcp_opts")
    with op.batch_alter_table("subnets") as batch_op:
        batch_op.drop_column("subnetpool_id")
    with op.batch_alter_table("networks") as batch_op:
        batch_op.drop_column("router_external")
    op.drop_index("ix_subnetpools_project_id", table_name="subnetpools")
    op.drop_table("subnetpools")
    op.drop_table("quotas")
