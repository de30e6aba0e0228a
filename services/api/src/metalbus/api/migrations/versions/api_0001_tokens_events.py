"""API tokens and the event log.

Revision ID: api_0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "api_0001"
down_revision = None
branch_labels = ("api",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.Enum("ADMIN", "OPERATOR", "READONLY", name="role"), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=True),
    )
    op.create_table(
        "api_event_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(length=64), nullable=False, unique=True),
        sa.Column("type", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
    )
    op.create_index("ix_api_event_log_type", "api_event_log", ["type"])
    op.create_index("ix_api_event_log_subject", "api_event_log", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_api_event_log_subject", "api_event_log")
    op.drop_index("ix_api_event_log_type", "api_event_log")
    op.drop_table("api_event_log")
    op.drop_table("api_token")
    sa.Enum(name="role").drop(op.get_bind(), checkfirst=True)
