"""Scans say how they asked: ARP, or ICMP echo (ping) through a router.

Revision ID: discovery_0002
Revises: discovery_0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "discovery_0002"
down_revision = "discovery_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Scans recorded before were all ARP sweeps.
    with op.batch_alter_table("discovery_scan") as batch:
        batch.add_column(
            sa.Column("method", sa.String(length=8), nullable=False, server_default="arp")
        )


def downgrade() -> None:
    with op.batch_alter_table("discovery_scan") as batch:
        batch.drop_column("method")
