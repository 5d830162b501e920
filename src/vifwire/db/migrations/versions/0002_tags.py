"""tags of networks, subnets and ports

Revision ID: 0002_tags
Revises: 0001_initial
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_tags"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("resource_id", sa.String(length=36), nullable=False),
        sa.Column("tag", sa.String(length=60), nullable=False),
        sa.Column("resource_type", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("resource_id", "tag", name=op.f("pk_tags")),
    )


def downgrade() -> None:
    op.drop_table("tags")
