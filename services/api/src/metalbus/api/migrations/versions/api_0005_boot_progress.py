"""A machine's boot progress (the last boot file it fetched in its flow, and when).

Revision ID: api_0005_boot_progress
Revises: api_0004_devices
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "api_0005_boot_progress"
down_revision = "api_0004_devices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_machine", sa.Column("boot_progress", sa.String(length=32), nullable=True))
    op.add_column(
        "api_machine", sa.Column("boot_progress_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("api_machine") as batch:
        batch.drop_column("boot_progress_at")
        batch.drop_column("boot_progress")
