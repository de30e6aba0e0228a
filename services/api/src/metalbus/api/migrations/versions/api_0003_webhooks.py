"""Outbound webhooks: subscriptions, deliveries and their attempts.

Revision ID: api_0003_webhooks
Revises: api_0002_machines
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "api_0003_webhooks"
down_revision = "api_0002_machines"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_webhook",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("event_types", sa.Text(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
    )
    op.create_table(
        "api_webhook_delivery",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "webhook_id",
            sa.String(length=32),
            sa.ForeignKey("api_webhook.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempt_limit", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leased_by", sa.String(length=255), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("webhook_id", "event_id"),
    )
    op.create_index(
        "ix_api_webhook_delivery_status", "api_webhook_delivery", ["status"], unique=False
    )
    op.create_index(
        "ix_api_webhook_delivery_next_attempt_at",
        "api_webhook_delivery",
        ["next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "api_webhook_attempt",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id",
            sa.Integer(),
            sa.ForeignKey("api_webhook_delivery.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
    )
    op.create_index(
        "ix_api_webhook_attempt_delivery_id", "api_webhook_attempt", ["delivery_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_api_webhook_attempt_delivery_id", "api_webhook_attempt")
    op.drop_table("api_webhook_attempt")
    op.drop_index("ix_api_webhook_delivery_next_attempt_at", "api_webhook_delivery")
    op.drop_index("ix_api_webhook_delivery_status", "api_webhook_delivery")
    op.drop_table("api_webhook_delivery")
    op.drop_table("api_webhook")
