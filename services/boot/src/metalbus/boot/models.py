"""The boot service's tables (its own database; nobody else reads or writes them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field, SQLModel


class LeaseRow(SQLModel, table=True):
    """A DHCP lease, as durable as the ACK that announced it: written (in a batch with the
    leases of the packets that came with it) before the ACK leaves."""

    __tablename__ = "boot_lease"

    ip: str = Field(primary_key=True, max_length=15)
    mac: str = Field(max_length=17)
    client_key: str = Field(max_length=520)
    client_id: str | None = Field(default=None, max_length=510)
    hostname: str | None = Field(default=None, max_length=253)
    subnet_id: int
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class BootConfigRow(SQLModel, table=True):
    """What one machine network-boots (a MAC without a row enlists)."""

    __tablename__ = "boot_config"

    mac: str = Field(primary_key=True, max_length=17)
    purpose: str = Field(max_length=16)
    kernel: str = Field(max_length=255)
    initrd: str = Field(max_length=255)
    cmdline: str = Field(max_length=1024)
    # the machine's SMBIOS UUID: its config is also served under that name
    uuid: str | None = Field(default=None, max_length=36, unique=True, index=True)
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


BOOT_TABLES = frozenset({LeaseRow.__tablename__, BootConfigRow.__tablename__})
