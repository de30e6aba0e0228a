"""BMCs: settings, sealed secrets, last known power state.

Revision ID: power_0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "power_0001"
down_revision = None
branch_labels = ("power",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "power_bmc",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=63), nullable=False, unique=True),
        sa.Column("driver", sa.String(length=16), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("machine_id", sa.String(length=64), nullable=True),
        sa.Column("poll", sa.Boolean(), nullable=False),
        sa.Column("power_state", sa.String(length=16), nullable=False),
        sa.Column("power_state_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reachable", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_power_bmc_machine_id", "power_bmc", ["machine_id"])


def downgrade() -> None:
    op.drop_index("ix_power_bmc_machine_id", "power_bmc")
    op.drop_table("power_bmc")
