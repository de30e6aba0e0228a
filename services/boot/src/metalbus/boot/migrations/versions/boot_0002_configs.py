"""Per-machine boot configs.

Revision ID: boot_0002
Revises: boot_0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "boot_0002"
down_revision = "boot_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "boot_config",
        sa.Column("mac", sa.String(length=17), primary_key=True),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("kernel", sa.String(length=255), nullable=False),
        sa.Column("initrd", sa.String(length=255), nullable=False),
        sa.Column("cmdline", sa.String(length=1024), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("boot_config")
