"""KVM hosts, their storage pools, networks and interfaces, and VMs.

Revision ID: compose_0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "compose_0001"
down_revision = None
branch_labels = ("compose",)
depends_on = None


def _host_ref() -> sa.Column:
    return sa.Column(
        "host_id",
        sa.Integer(),
        sa.ForeignKey("compose_host.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "compose_host",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=63), nullable=False, unique=True),
        sa.Column("uri", sa.String(length=1024), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("host_ip", sa.String(length=45), nullable=True),
        sa.Column("zone", sa.String(length=63), nullable=True),
        sa.Column("pool", sa.String(length=63), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("cpu_over_commit_ratio", sa.Float(), nullable=False),
        sa.Column("memory_over_commit_ratio", sa.Float(), nullable=False),
        sa.Column("default_storage_pool", sa.String(length=63), nullable=True),
        sa.Column("default_macvlan_mode", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("architecture", sa.String(length=40), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("cpu_speed", sa.Integer(), nullable=False),
        sa.Column("memory", sa.Integer(), nullable=False),
        sa.Column("correlated", sa.Boolean(), nullable=False),
        sa.Column("correlated_with", sa.String(length=160), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "compose_storage_pool",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _host_ref(),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("host_id", "name", name="uq_compose_storage_pool_host_name"),
    )
    op.create_table(
        "compose_network",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _host_ref(),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("bridge", sa.String(length=255), nullable=True),
        sa.Column("dhcp", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("addresses", sa.Text(), nullable=False),
        sa.UniqueConstraint("host_id", "name", name="uq_compose_network_host_name"),
    )
    op.create_table(
        "compose_host_interface",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _host_ref(),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("members", sa.Text(), nullable=False),
        sa.Column("links", sa.Text(), nullable=False),
        sa.UniqueConstraint("host_id", "name", name="uq_compose_host_interface_host_name"),
    )
    op.create_table(
        "compose_vm",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _host_ref(),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("composed", sa.Boolean(), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("memory", sa.Integer(), nullable=False),
        sa.Column("architecture", sa.String(length=40), nullable=False),
        sa.Column("power_state", sa.String(length=16), nullable=False),
        sa.Column("zone", sa.String(length=63), nullable=True),
        sa.Column("pool", sa.String(length=63), nullable=True),
        sa.Column("disks", sa.Text(), nullable=False),
        sa.Column("interfaces", sa.Text(), nullable=False),
        sa.Column("network_boot", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("host_id", "name", name="uq_compose_vm_host_name"),
        sa.UniqueConstraint("host_id", "uuid", name="uq_compose_vm_host_uuid"),
    )
    for table in (
        "compose_storage_pool",
        "compose_network",
        "compose_host_interface",
        "compose_vm",
    ):
        op.create_index(f"ix_{table}_host_id", table, ["host_id"])


def downgrade() -> None:
    for table in (
        "compose_vm",
        "compose_host_interface",
        "compose_network",
        "compose_storage_pool",
    ):
        op.drop_index(f"ix_{table}_host_id", table)
        op.drop_table(table)
    op.drop_table("compose_host")
