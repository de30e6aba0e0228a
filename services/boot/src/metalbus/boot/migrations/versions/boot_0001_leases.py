"""DHCP leases.

Revision ID: boot_0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "boot_0001"
down_revision = None
branch_labels = ("boot",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "boot_lease",
        sa.Column("ip", sa.String(length=15), primary_key=True),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("client_key", sa.String(length=520), nullable=False),
        sa.Column("client_id", sa.String(length=510), nullable=True),
        sa.Column("hostname", sa.String(length=253), nullable=True),
        sa.Column("subnet_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("boot_lease")
