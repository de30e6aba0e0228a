"""The ipam service's tables (its own database; nobody else reads or writes them).

Addresses are stored twice: as text for people and as a 16-byte big-endian key
(:func:`metalbus.ipam.spans.address_key`) for ordering and range look-ups, which works the
same on SQLite and PostgreSQL and holds IPv6. Enumerations are stored as their text values.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, LargeBinary, Text
from sqlalchemy import UniqueConstraint as Unique
from sqlmodel import Field, SQLModel


def _time(*, nullable: bool = False, index: bool = False) -> datetime:
    return Field(  # type: ignore[no-any-return]
        default=None if nullable else ...,
        sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index),
    )


def _key(*, nullable: bool = False) -> bytes:
    return Field(sa_column=Column(LargeBinary(17), nullable=nullable))  # type: ignore[no-any-return]


def _ref(target: str, *, nullable: bool = False, index: bool = True) -> int:
    return Field(  # type: ignore[no-any-return]
        default=None if nullable else ...,
        sa_column=Column(Integer, ForeignKey(target), nullable=nullable, index=index),
    )


class FabricRow(SQLModel, table=True):
    __tablename__ = "ipam_fabric"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=63, unique=True)
    description: str = Field(sa_column=Column(Text, nullable=False))
    class_type: str | None = Field(default=None, max_length=100)
    default_vlan_id: int | None = Field(default=None)
    created_at: datetime = _time()
    updated_at: datetime = _time()


class SpaceRow(SQLModel, table=True):
    __tablename__ = "ipam_space"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=63, unique=True)
    description: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _time()
    updated_at: datetime = _time()


class VlanRow(SQLModel, table=True):
    __tablename__ = "ipam_vlan"
    __table_args__ = (Unique("fabric_id", "vid", name="uq_ipam_vlan_fabric_vid"),)

    id: int | None = Field(default=None, primary_key=True)
    fabric_id: int = _ref("ipam_fabric.id")
    vid: int
    name: str | None = Field(default=None, max_length=63)
    mtu: int
    dhcp_on: bool
    external_dhcp: str | None = Field(default=None, max_length=45)
    relay_vlan_id: int | None = _ref("ipam_vlan.id", nullable=True)
    space_id: int | None = _ref("ipam_space.id", nullable=True)
    description: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _time()
    updated_at: datetime = _time()


class SubnetRow(SQLModel, table=True):
    """A subnet; ``available`` (decimal text: IPv6 counts pass 2**63) is kept in step with
    its free blocks, in the same transactions."""

    __tablename__ = "ipam_subnet"
    __table_args__ = (Index("ix_ipam_subnet_version_first", "ip_version", "first_key"),)

    id: int | None = Field(default=None, primary_key=True)
    cidr: str = Field(max_length=64, unique=True)
    ip_version: int
    first_key: bytes = _key()
    last_key: bytes = _key()
    name: str = Field(max_length=63)
    description: str = Field(sa_column=Column(Text, nullable=False))
    vlan_id: int = _ref("ipam_vlan.id")
    gateway_ip: str | None = Field(default=None, max_length=45)
    dns_servers: str = Field(sa_column=Column(Text, nullable=False))
    ntp_servers: str = Field(sa_column=Column(Text, nullable=False))
    domain: str | None = Field(default=None, max_length=253)
    managed: bool
    allow_dns: bool
    active_discovery: bool
    disabled_boot_architectures: str = Field(sa_column=Column(Text, nullable=False))
    low_free_threshold: float | None = Field(default=None)
    available: str = Field(max_length=40)
    low_alarm: bool = False
    created_at: datetime = _time()
    updated_at: datetime = _time()


class StaticRouteRow(SQLModel, table=True):
    __tablename__ = "ipam_static_route"
    __table_args__ = (
        Unique(
            "source_subnet_id",
            "destination_subnet_id",
            "gateway_ip",
            name="uq_ipam_static_route_source_destination_gateway",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_subnet_id: int = _ref("ipam_subnet.id")
    destination_subnet_id: int = _ref("ipam_subnet.id")
    gateway_ip: str = Field(max_length=45)
    metric: int
    created_at: datetime = _time()
    updated_at: datetime = _time()


class IpRangeRow(SQLModel, table=True):
    __tablename__ = "ipam_ip_range"

    id: int | None = Field(default=None, primary_key=True)
    subnet_id: int = _ref("ipam_subnet.id")
    type: str = Field(max_length=16)
    start_ip: str = Field(max_length=45)
    end_ip: str = Field(max_length=45)
    start_key: bytes = _key()
    end_key: bytes = _key()
    comment: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _time()
    updated_at: datetime = _time()


class IpAddressRow(SQLModel, table=True):
    __tablename__ = "ipam_ip_address"
    __table_args__ = (Unique("subnet_id", "ip_key", name="uq_ipam_ip_address_subnet_ip"),)

    id: int | None = Field(default=None, primary_key=True)
    subnet_id: int = _ref("ipam_subnet.id", index=False)
    ip: str = Field(max_length=45)
    ip_key: bytes = _key()
    alloc_type: str = Field(max_length=16)
    owner_type: str | None = Field(default=None, max_length=16)
    owner_id: str | None = Field(default=None, max_length=64, index=True)
    hostname: str | None = Field(default=None, max_length=253)
    mac: str | None = Field(default=None, max_length=17, index=True)
    lease_expires_at: datetime | None = _time(nullable=True, index=True)
    created_at: datetime = _time()
    updated_at: datetime = _time()


class FreeBlockRow(SQLModel, table=True):
    """A maximal run of addresses that can be assigned automatically.

    The blocks of a subnet are its usable span minus ranges (or, unmanaged, its reserved
    ranges), infrastructure addresses and addresses in use. "Next free" reads the first
    row of the (subnet, size, start) index: the smallest block, lowest address first.
    """

    __tablename__ = "ipam_free_block"
    __table_args__ = (
        Index("ix_ipam_free_block_by_size", "subnet_id", "size_key", "start_key"),
        Unique("subnet_id", "start_key", name="uq_ipam_free_block_subnet_start"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subnet_id: int = _ref("ipam_subnet.id", index=False)
    start_key: bytes = _key()
    end_key: bytes = _key()
    size_key: bytes = _key()


class RequestKeyRow(SQLModel, table=True):
    """The answer to a request that carried an idempotency key, for its retries."""

    __tablename__ = "ipam_request_key"

    key: str = Field(primary_key=True, max_length=160)
    fingerprint: str = Field(max_length=64)
    response: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _time(index=True)


IPAM_TABLES = frozenset(
    {
        FabricRow.__tablename__,
        SpaceRow.__tablename__,
        VlanRow.__tablename__,
        SubnetRow.__tablename__,
        StaticRouteRow.__tablename__,
        IpRangeRow.__tablename__,
        IpAddressRow.__tablename__,
        FreeBlockRow.__tablename__,
        RequestKeyRow.__tablename__,
    }
)
