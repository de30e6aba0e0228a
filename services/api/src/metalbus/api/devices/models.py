"""Tables of devices, their interfaces and each interface's address.

A device's parent is a machine's or another device's system id: kept as text since it
may name either table (the routes check it exists, and that devices make no loop).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, Text
from sqlmodel import Field, SQLModel

from metalbus.shared.contract.devices import IpAssignment


class Device(SQLModel, table=True):
    """A device (MAAS's non-deployable node)."""

    __tablename__ = "api_device"

    id: int | None = Field(default=None, primary_key=True)
    system_id: str = Field(max_length=16, unique=True)
    hostname: str = Field(max_length=253, unique=True)
    domain: str = Field(max_length=253)
    description: str = Field(default="", max_length=1024)
    parent: str | None = Field(default=None, max_length=16, index=True)
    zone_id: int = Field(sa_column=Column(Integer, ForeignKey("api_zone.id"), nullable=False))
    tags: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class DeviceInterface(SQLModel, table=True):
    """A device's interface and its one address (none for a dynamic one)."""

    __tablename__ = "api_device_interface"

    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("api_device.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    name: str = Field(max_length=63)
    mac: str = Field(max_length=17, unique=True)
    ip_assignment: IpAssignment = Field(sa_column=Column(String(16), nullable=False))
    subnet_id: int | None = None
    ip: str | None = Field(default=None, max_length=64)
    ip_id: int | None = Field(default=None, description="ipam's id of the address")


DEVICE_TABLES = frozenset({Device.__tablename__, DeviceInterface.__tablename__})
