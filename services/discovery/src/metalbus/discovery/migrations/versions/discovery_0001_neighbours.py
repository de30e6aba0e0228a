"""Neighbours, mDNS names and scans.

Revision ID: discovery_0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "discovery_0001"
down_revision = None
branch_labels = ("discovery",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "discovery_neighbour",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("vid", sa.Integer(), nullable=False),
        sa.Column("interface", sa.String(length=64), nullable=False),
        sa.Column("observer", sa.String(length=64), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("interface", "vid", "ip", name="uq_discovery_neighbour_where"),
    )
    op.create_index("ix_discovery_neighbour_mac", "discovery_neighbour", ["mac"])
    op.create_index("ix_discovery_neighbour_ip", "discovery_neighbour", ["ip"])
    op.create_table(
        "discovery_mdns",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("interface", sa.String(length=64), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("interface", "ip", name="uq_discovery_mdns_where"),
    )
    op.create_index("ix_discovery_mdns_ip", "discovery_mdns", ["ip"])
    op.create_table(
        "discovery_scan",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("cidr", sa.String(length=64), nullable=False),
        sa.Column("interface", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("probes", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("discovery_scan")
    op.drop_index("ix_discovery_mdns_ip", "discovery_mdns")
    op.drop_table("discovery_mdns")
    op.drop_index("ix_discovery_neighbour_ip", "discovery_neighbour")
    op.drop_index("ix_discovery_neighbour_mac", "discovery_neighbour")
    op.drop_table("discovery_neighbour")
