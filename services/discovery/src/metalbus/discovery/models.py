"""The discovery service's tables (its own database; nobody else reads or writes them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class NeighbourRow(SQLModel, table=True):
    """An address answered by a MAC on an interface and VLAN (0: untagged).

    One row per (interface, vid, ip): when another MAC answers for the address the row
    takes the new MAC (a move). Written in batches from the memory the listener decides in.
    """

    __tablename__ = "discovery_neighbour"
    __table_args__ = (
        UniqueConstraint("interface", "vid", "ip", name="uq_discovery_neighbour_where"),
        Index("ix_discovery_neighbour_mac", "mac"),
        Index("ix_discovery_neighbour_ip", "ip"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ip: str = Field(max_length=45)
    mac: str = Field(max_length=17)
    vid: int = Field(default=0)
    interface: str = Field(max_length=64)
    observer: str = Field(max_length=64)
    first_seen: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_seen: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    count: int = Field(sa_column=Column(BigInteger, nullable=False))


class MdnsNameRow(SQLModel, table=True):
    """A host name announced over mDNS for an address on an interface (the latest one)."""

    __tablename__ = "discovery_mdns"
    __table_args__ = (
        UniqueConstraint("interface", "ip", name="uq_discovery_mdns_where"),
        Index("ix_discovery_mdns_ip", "ip"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ip: str = Field(max_length=45)
    hostname: str = Field(max_length=253)
    interface: str = Field(max_length=64)
    first_seen: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_seen: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    count: int = Field(sa_column=Column(BigInteger, nullable=False))


class ScanRow(SQLModel, table=True):
    """An active scan: asked for, running, done or failed."""

    __tablename__ = "discovery_scan"

    id: int | None = Field(default=None, primary_key=True)
    cidr: str = Field(max_length=64)
    interface: str = Field(max_length=64)
    method: str = Field(default="arp", max_length=8)  # arp or ping (ScanMethod)
    state: str = Field(max_length=16)
    probes: int
    sent: int = 0
    answered: int = 0
    error: str | None = Field(default=None, max_length=500)
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class InventoryMacRow(SQLModel, table=True):
    """A MAC on an interface of a machine or device the api knows (from the api's events).

    A device made known with a dynamic (DHCP) address leaves nothing in ipam, so ipam alone
    cannot say its MAC is known; this table can. ``owner`` is ``machine:<system_id>`` or
    ``device:<system_id>``.
    """

    __tablename__ = "discovery_inventory_mac"
    __table_args__ = (
        UniqueConstraint("owner", "mac", name="uq_discovery_inventory_mac"),
        Index("ix_discovery_inventory_mac_mac", "mac"),
    )

    id: int | None = Field(default=None, primary_key=True)
    owner: str = Field(max_length=80)
    mac: str = Field(max_length=17)


DISCOVERY_TABLES = frozenset(
    {
        NeighbourRow.__tablename__,
        MdnsNameRow.__tablename__,
        ScanRow.__tablename__,
        InventoryMacRow.__tablename__,
    }
)
