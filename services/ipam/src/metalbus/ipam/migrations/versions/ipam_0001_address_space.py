"""The address space: fabrics, spaces, VLANs, subnets, routes, ranges, addresses, free blocks.

Revision ID: ipam_0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "ipam_0001"
down_revision = None
branch_labels = ("ipam",)
depends_on = None


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _key(name: str) -> sa.Column:
    return sa.Column(name, sa.LargeBinary(17), nullable=False)


def upgrade() -> None:
    op.create_table(
        "ipam_fabric",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=63), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("class_type", sa.String(length=100), nullable=True),
        sa.Column("default_vlan_id", sa.Integer(), nullable=True),
        *_times(),
    )
    op.create_table(
        "ipam_space",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=63), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        *_times(),
    )
    op.create_table(
        "ipam_vlan",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("fabric_id", sa.Integer(), sa.ForeignKey("ipam_fabric.id"), nullable=False),
        sa.Column("vid", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=True),
        sa.Column("mtu", sa.Integer(), nullable=False),
        sa.Column("dhcp_on", sa.Boolean(), nullable=False),
        sa.Column("external_dhcp", sa.String(length=45), nullable=True),
        sa.Column("relay_vlan_id", sa.Integer(), sa.ForeignKey("ipam_vlan.id"), nullable=True),
        sa.Column("space_id", sa.Integer(), sa.ForeignKey("ipam_space.id"), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        *_times(),
        sa.UniqueConstraint("fabric_id", "vid", name="uq_ipam_vlan_fabric_vid"),
    )
    for column in ("fabric_id", "relay_vlan_id", "space_id"):
        op.create_index(f"ix_ipam_vlan_{column}", "ipam_vlan", [column])
    op.create_table(
        "ipam_subnet",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("cidr", sa.String(length=64), nullable=False, unique=True),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        _key("first_key"),
        _key("last_key"),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("vlan_id", sa.Integer(), sa.ForeignKey("ipam_vlan.id"), nullable=False),
        sa.Column("gateway_ip", sa.String(length=45), nullable=True),
        sa.Column("dns_servers", sa.Text(), nullable=False),
        sa.Column("ntp_servers", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=True),
        sa.Column("managed", sa.Boolean(), nullable=False),
        sa.Column("allow_dns", sa.Boolean(), nullable=False),
        sa.Column("active_discovery", sa.Boolean(), nullable=False),
        sa.Column("disabled_boot_architectures", sa.Text(), nullable=False),
        sa.Column("low_free_threshold", sa.Float(), nullable=True),
        sa.Column("available", sa.String(length=40), nullable=False),
        sa.Column("low_alarm", sa.Boolean(), nullable=False),
        *_times(),
    )
    op.create_index("ix_ipam_subnet_vlan_id", "ipam_subnet", ["vlan_id"])
    op.create_index("ix_ipam_subnet_version_first", "ipam_subnet", ["ip_version", "first_key"])
    op.create_table(
        "ipam_static_route",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "source_subnet_id", sa.Integer(), sa.ForeignKey("ipam_subnet.id"), nullable=False
        ),
        sa.Column(
            "destination_subnet_id", sa.Integer(), sa.ForeignKey("ipam_subnet.id"), nullable=False
        ),
        sa.Column("gateway_ip", sa.String(length=45), nullable=False),
        sa.Column("metric", sa.Integer(), nullable=False),
        *_times(),
        sa.UniqueConstraint(
            "source_subnet_id",
            "destination_subnet_id",
            "gateway_ip",
            name="uq_ipam_static_route_source_destination_gateway",
        ),
    )
    for column in ("source_subnet_id", "destination_subnet_id"):
        op.create_index(f"ix_ipam_static_route_{column}", "ipam_static_route", [column])
    op.create_table(
        "ipam_ip_range",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("subnet_id", sa.Integer(), sa.ForeignKey("ipam_subnet.id"), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("start_ip", sa.String(length=45), nullable=False),
        sa.Column("end_ip", sa.String(length=45), nullable=False),
        _key("start_key"),
        _key("end_key"),
        sa.Column("comment", sa.Text(), nullable=False),
        *_times(),
    )
    op.create_index("ix_ipam_ip_range_subnet_id", "ipam_ip_range", ["subnet_id"])
    op.create_table(
        "ipam_ip_address",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("subnet_id", sa.Integer(), sa.ForeignKey("ipam_subnet.id"), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        _key("ip_key"),
        sa.Column("alloc_type", sa.String(length=16), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=True),
        sa.Column("owner_id", sa.String(length=64), nullable=True),
        sa.Column("hostname", sa.String(length=253), nullable=True),
        sa.Column("mac", sa.String(length=17), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        *_times(),
        sa.UniqueConstraint("subnet_id", "ip_key", name="uq_ipam_ip_address_subnet_ip"),
    )
    for column in ("owner_id", "mac", "lease_expires_at"):
        op.create_index(f"ix_ipam_ip_address_{column}", "ipam_ip_address", [column])
    op.create_table(
        "ipam_free_block",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("subnet_id", sa.Integer(), sa.ForeignKey("ipam_subnet.id"), nullable=False),
        _key("start_key"),
        _key("end_key"),
        _key("size_key"),
        sa.UniqueConstraint("subnet_id", "start_key", name="uq_ipam_free_block_subnet_start"),
    )
    op.create_index(
        "ix_ipam_free_block_by_size", "ipam_free_block", ["subnet_id", "size_key", "start_key"]
    )
    op.create_table(
        "ipam_request_key",
        sa.Column("key", sa.String(length=160), primary_key=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ipam_request_key_created_at", "ipam_request_key", ["created_at"])


def downgrade() -> None:
    for table in (
        "ipam_request_key",
        "ipam_free_block",
        "ipam_ip_address",
        "ipam_ip_range",
        "ipam_static_route",
        "ipam_subnet",
        "ipam_vlan",
        "ipam_space",
        "ipam_fabric",
    ):
        op.drop_table(table)
