"""Boot configs addressable by machine UUID.

Revision ID: boot_0003
Revises: boot_0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "boot_0003"
down_revision = "boot_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("boot_config", sa.Column("uuid", sa.String(length=36), nullable=True))
    op.create_index("ix_boot_config_uuid", "boot_config", ["uuid"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_boot_config_uuid", table_name="boot_config")
    op.drop_column("boot_config", "uuid")
