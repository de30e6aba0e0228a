"""Machines, their interfaces, links and status history; zones and resource pools.

Revision ID: api_0002_machines
Revises: api_0001
Create Date: 2026-11-23
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "api_0002_machines"
down_revision = "api_0001"
branch_labels = None
depends_on = None


def _named(table: str) -> sa.Table:
    return op.create_table(
        table,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=63), nullable=False, unique=True),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def upgrade() -> None:
    now = datetime.now(UTC)
    for table in ("api_zone", "api_resource_pool"):
        created = _named(table)
        # Every machine is in a zone and a pool: the default ones always exist.
        op.bulk_insert(
            created,
            [
                {
                    "id": 1,
                    "name": "default",
                    "description": "",
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
    if op.get_bind().dialect.name == "postgresql":
        # The explicit id 1 above does not move the sequences on.
        for table in ("api_zone", "api_resource_pool"):
            op.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 1)")
    op.create_table(
        "api_machine",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("system_id", sa.String(length=16), nullable=False, unique=True),
        sa.Column("hostname", sa.String(length=253), nullable=False, unique=True),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("architecture", sa.String(length=40), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("memory", sa.Integer(), nullable=False),
        sa.Column("storage", sa.BigInteger(), nullable=False),
        sa.Column("disks", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("zone_id", sa.Integer(), sa.ForeignKey("api_zone.id"), nullable=False),
        sa.Column("pool_id", sa.Integer(), sa.ForeignKey("api_resource_pool.id"), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("previous_status", sa.String(length=32), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("power_driver", sa.String(length=32), nullable=True),
        sa.Column("power_parameters", sa.Text(), nullable=False),
        sa.Column("bmc_id", sa.Integer(), nullable=True),
        sa.Column("power_pending", sa.Boolean(), nullable=False),
        sa.Column("pod_id", sa.Integer(), nullable=True),
        sa.Column("vm_id", sa.Integer(), nullable=True, unique=True),
        sa.Column("install_kvm", sa.Boolean(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("flow", sa.String(length=32), nullable=True),
        sa.Column("flow_step", sa.String(length=32), nullable=True),
        sa.Column("flow_attempts", sa.Integer(), nullable=False),
        sa.Column("flow_next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("flow_error", sa.String(length=1024), nullable=True),
        sa.Column("flow_trace", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_api_machine_status", "api_machine", ["status"])
    op.create_index("ix_api_machine_flow_step", "api_machine", ["flow_step"])
    op.create_table(
        "api_machine_interface",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "machine_id",
            sa.Integer(),
            sa.ForeignKey("api_machine.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False, unique=True),
        sa.Column("vlan_id", sa.Integer(), nullable=True),
    )
    op.create_index("ix_api_machine_interface_machine_id", "api_machine_interface", ["machine_id"])
    op.create_table(
        "api_machine_link",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "interface_id",
            sa.Integer(),
            sa.ForeignKey("api_machine_interface.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("subnet_id", sa.Integer(), nullable=True),
        sa.Column("vlan_id", sa.Integer(), nullable=True),
        sa.Column("requested_ip", sa.String(length=64), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("ip_id", sa.Integer(), nullable=True),
    )
    op.create_index("ix_api_machine_link_interface_id", "api_machine_link", ["interface_id"])
    op.create_table(
        "api_machine_status",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "machine_id",
            sa.Integer(),
            sa.ForeignKey("api_machine.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("previous", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(length=1024), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_api_machine_status_machine_id", "api_machine_status", ["machine_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_api_machine_status_machine_id", "api_machine_status"),
        ("ix_api_machine_link_interface_id", "api_machine_link"),
        ("ix_api_machine_interface_machine_id", "api_machine_interface"),
        ("ix_api_machine_flow_step", "api_machine"),
        ("ix_api_machine_status", "api_machine"),
    ):
        op.drop_index(index, table)
    for table in (
        "api_machine_status",
        "api_machine_link",
        "api_machine_interface",
        "api_machine",
        "api_resource_pool",
        "api_zone",
    ):
        op.drop_table(table)
