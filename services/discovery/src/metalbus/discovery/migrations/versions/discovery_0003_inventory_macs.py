"""MACs of the api's machines and devices, so a MAC with no address in ipam is known too.

Revision ID: discovery_0003
Revises: discovery_0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "discovery_0003"
down_revision = "discovery_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "discovery_inventory_mac",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner", sa.String(length=80), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.UniqueConstraint("owner", "mac", name="uq_discovery_inventory_mac"),
    )
    op.create_index("ix_discovery_inventory_mac_mac", "discovery_inventory_mac", ["mac"])


def downgrade() -> None:
    op.drop_index("ix_discovery_inventory_mac_mac", table_name="discovery_inventory_mac")
    op.drop_table("discovery_inventory_mac")
