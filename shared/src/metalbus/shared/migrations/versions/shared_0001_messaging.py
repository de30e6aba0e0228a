"""Messaging tables: transactional outbox and processed-event log.

Revision ID: shared_0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "shared_0001"
down_revision = None
branch_labels = ("shared",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metalbus_outbox",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(length=64), nullable=False, unique=True),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "metalbus_processed_event",
        sa.Column("consumer", sa.String(length=128), primary_key=True),
        sa.Column("event_id", sa.String(length=64), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_metalbus_processed_event_processed_at", "metalbus_processed_event", ["processed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_metalbus_processed_event_processed_at", "metalbus_processed_event")
    op.drop_table("metalbus_processed_event")
    op.drop_table("metalbus_outbox")
