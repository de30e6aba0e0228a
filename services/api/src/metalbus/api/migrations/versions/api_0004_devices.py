"""Devices and their interfaces.

Revision ID: api_0004_devices
Revises: api_0003_webhooks
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "api_0004_devices"
down_revision = "api_0003_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_device",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("system_id", sa.String(length=16), nullable=False, unique=True),
        sa.Column("hostname", sa.String(length=253), nullable=False, unique=True),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("parent", sa.String(length=16), nullable=True),
        sa.Column("zone_id", sa.Integer(), sa.ForeignKey("api_zone.id"), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_api_device_parent", "api_device", ["parent"], unique=False)
    op.create_table(
        "api_device_interface",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "device_id",
            sa.Integer(),
            sa.ForeignKey("api_device.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False, unique=True),
        sa.Column("ip_assignment", sa.String(length=16), nullable=False),
        sa.Column("subnet_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("ip_id", sa.Integer(), nullable=True),
    )
    op.create_index(
        "ix_api_device_interface_device_id", "api_device_interface", ["device_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("api_device_interface")
    op.drop_table("api_device")
