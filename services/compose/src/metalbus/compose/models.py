"""The compose service's tables (its own database; nobody else reads or writes them).

What discovery finds on a host (storage pools, libvirt networks, host interfaces) is
replaced as a whole on every refresh; VMs are kept by libvirt UUID, so a VM metalbus
composed keeps its row (and its addresses) across refreshes. Lists inside a row (tags, a
VM's disks and interfaces, an interface's addresses) are JSON text.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Integer, Text
from sqlalchemy import UniqueConstraint as Unique
from sqlmodel import Field, SQLModel


def _time(*, nullable: bool = False) -> datetime:
    return Field(  # type: ignore[no-any-return]
        default=None if nullable else ...,
        sa_column=Column(DateTime(timezone=True), nullable=nullable),
    )


def _host_ref() -> int:
    return Field(  # type: ignore[no-any-return]
        sa_column=Column(
            Integer, ForeignKey("compose_host.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )


def _text(default: str = "") -> str:
    return Field(default=default, sa_column=Column(Text, nullable=False))  # type: ignore[no-any-return]


def _bytes() -> int:
    return Field(sa_column=Column(BigInteger, nullable=False))  # type: ignore[no-any-return]


class HostRow(SQLModel, table=True):
    """A KVM host: how to reach it (credentials sealed), its settings, what it has."""

    __tablename__ = "compose_host"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=63, unique=True)
    uri: str = Field(max_length=1024)
    secrets: str = _text()
    host_ip: str | None = Field(default=None, max_length=45)
    zone: str | None = Field(default=None, max_length=63)
    pool: str | None = Field(default=None, max_length=63)
    tags: str = _text("[]")
    cpu_over_commit_ratio: float
    memory_over_commit_ratio: float
    default_storage_pool: str | None = Field(default=None, max_length=63)
    default_macvlan_mode: str = Field(max_length=16)
    origin: str = Field(max_length=16)
    architecture: str = Field(max_length=40)
    cores: int
    cpu_speed: int
    memory: int
    correlated: bool
    correlated_with: str | None = Field(default=None, max_length=160)
    refreshed_at: datetime | None = _time(nullable=True)
    created_at: datetime = _time()
    updated_at: datetime = _time()


class StoragePoolRow(SQLModel, table=True):
    __tablename__ = "compose_storage_pool"
    __table_args__ = (Unique("host_id", "name", name="uq_compose_storage_pool_host_name"),)

    id: int | None = Field(default=None, primary_key=True)
    host_id: int = _host_ref()
    name: str = Field(max_length=255)
    type: str = Field(max_length=32)
    path: str | None = Field(default=None, max_length=1024)
    total: int = _bytes()
    used: int = _bytes()
    available: int = _bytes()
    active: bool


class NetworkRow(SQLModel, table=True):
    __tablename__ = "compose_network"
    __table_args__ = (Unique("host_id", "name", name="uq_compose_network_host_name"),)

    id: int | None = Field(default=None, primary_key=True)
    host_id: int = _host_ref()
    name: str = Field(max_length=255)
    bridge: str | None = Field(default=None, max_length=255)
    dhcp: bool
    active: bool
    addresses: str = _text("[]")


class HostInterfaceRow(SQLModel, table=True):
    __tablename__ = "compose_host_interface"
    __table_args__ = (Unique("host_id", "name", name="uq_compose_host_interface_host_name"),)

    id: int | None = Field(default=None, primary_key=True)
    host_id: int = _host_ref()
    name: str = Field(max_length=255)
    type: str = Field(max_length=16)
    mac: str | None = Field(default=None, max_length=17)
    active: bool
    members: str = _text("[]")
    links: str = _text("[]")


class VmRow(SQLModel, table=True):
    """A VM: composed by metalbus (``composed``) or found on the host by discovery."""

    __tablename__ = "compose_vm"
    __table_args__ = (
        Unique("host_id", "name", name="uq_compose_vm_host_name"),
        Unique("host_id", "uuid", name="uq_compose_vm_host_uuid"),
    )

    id: int | None = Field(default=None, primary_key=True)
    host_id: int = _host_ref()
    name: str = Field(max_length=253)
    uuid: str = Field(max_length=36)
    status: str = Field(max_length=16)
    composed: bool
    cores: int
    memory: int
    architecture: str = Field(max_length=40)
    power_state: str = Field(max_length=16)
    zone: str | None = Field(default=None, max_length=63)
    pool: str | None = Field(default=None, max_length=63)
    disks: str = _text("[]")
    interfaces: str = _text("[]")
    network_boot: bool
    created_at: datetime = _time()
    updated_at: datetime = _time()


COMPOSE_TABLES = frozenset(
    {
        HostRow.__tablename__,
        StoragePoolRow.__tablename__,
        NetworkRow.__tablename__,
        HostInterfaceRow.__tablename__,
        VmRow.__tablename__,
    }
)
