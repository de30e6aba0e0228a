"""Tables of machines, their interfaces and links, zones and pools.

The api never keeps a power secret: a machine holds the power service's BMC id, the
driver's name and its settings *without* secrets (as the power service answers them).
The callback token a machine's boot environment carries is kept as a SHA-256 only.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Integer, String, Text
from sqlmodel import Field, SQLModel

from metalbus.shared.contract.machines import MachineStatus


def _utc_column(nullable: bool = False) -> Any:
    return Column(DateTime(timezone=True), nullable=nullable)


class LinkMode(StrEnum):
    """How an interface gets its address on a subnet (MAAS's link modes)."""

    AUTO = "auto"
    """An address from ipam when the machine deploys, released when it is released."""
    STATIC = "static"
    """The given address, assigned in ipam at deploy and kept until the link goes."""
    DHCP = "dhcp"
    """The deployed OS asks DHCP."""
    LINK_UP = "link_up"
    """The interface is up with no address."""


# -- zones and pools ----------------------------------------------------------------------


class Zone(SQLModel, table=True):
    """A zone: machines grouped for fault tolerance, performance or power."""

    __tablename__ = "api_zone"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=63, unique=True)
    description: str = Field(default="", max_length=1024)
    created_at: datetime = Field(sa_column=_utc_column())
    updated_at: datetime = Field(sa_column=_utc_column())


class ResourcePool(SQLModel, table=True):
    """A resource pool: machines set aside for a team or a purpose."""

    __tablename__ = "api_resource_pool"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=63, unique=True)
    description: str = Field(default="", max_length=1024)
    created_at: datetime = Field(sa_column=_utc_column())
    updated_at: datetime = Field(sa_column=_utc_column())


# -- machines -----------------------------------------------------------------------------


class Machine(SQLModel, table=True):
    """A machine and where its flow is (so a restarted api resumes it)."""

    __tablename__ = "api_machine"

    id: int | None = Field(default=None, primary_key=True)
    system_id: str = Field(max_length=16, unique=True)
    hostname: str = Field(max_length=253, unique=True)
    domain: str = Field(max_length=253)
    architecture: str = Field(max_length=40)
    cores: int = 0
    memory: int = 0
    storage: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    disks: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    tags: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    zone_id: int = Field(sa_column=Column(Integer, ForeignKey("api_zone.id"), nullable=False))
    pool_id: int = Field(
        sa_column=Column(Integer, ForeignKey("api_resource_pool.id"), nullable=False)
    )
    owner: str | None = Field(default=None, max_length=100)
    status: MachineStatus = Field(sa_column=Column(String(32), nullable=False, index=True))
    previous_status: MachineStatus | None = Field(default=None, sa_column=Column(String(32)))
    status_changed_at: datetime = Field(sa_column=_utc_column())
    power_driver: str | None = Field(default=None, max_length=32)
    power_parameters: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    bmc_id: int | None = None
    power_pending: bool = False
    pod_id: int | None = None
    vm_id: int | None = Field(default=None, unique=True)
    install_kvm: bool = False
    token_hash: str | None = Field(default=None, max_length=64)
    flow: str | None = Field(default=None, max_length=32)
    flow_step: str | None = Field(default=None, max_length=32, index=True)
    flow_attempts: int = 0
    flow_next_at: datetime | None = Field(default=None, sa_column=_utc_column(True))
    flow_error: str | None = Field(default=None, max_length=1024)
    flow_trace: str | None = Field(default=None, max_length=1024)
    # The last boot file the machine fetched in its status ("kernel fetched"), from boot's
    # events; the time holds off the stuck-machine time-out (see flows.time_out).
    boot_progress: str | None = Field(default=None, max_length=32)
    boot_progress_at: datetime | None = Field(default=None, sa_column=_utc_column(True))
    created_at: datetime = Field(sa_column=_utc_column())
    updated_at: datetime = Field(sa_column=_utc_column())


class MachineInterface(SQLModel, table=True):
    """A network interface of a machine (found by commissioning, or given by hand)."""

    __tablename__ = "api_machine_interface"

    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("api_machine.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    name: str = Field(max_length=63)
    mac: str = Field(max_length=17, unique=True)
    vlan_id: int | None = None


class MachineLink(SQLModel, table=True):
    """An interface's link to a subnet, and the address ipam gave it (if any)."""

    __tablename__ = "api_machine_link"

    id: int | None = Field(default=None, primary_key=True)
    interface_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("api_machine_interface.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    mode: LinkMode = Field(sa_column=Column(String(16), nullable=False))
    subnet_id: int | None = None
    vlan_id: int | None = None
    requested_ip: str | None = Field(default=None, max_length=64)
    ip: str | None = Field(default=None, max_length=64)
    ip_id: int | None = None


class StatusRecord(SQLModel, table=True):
    """One status change of a machine (its history)."""

    __tablename__ = "api_machine_status"

    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("api_machine.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    previous: MachineStatus = Field(sa_column=Column(String(32), nullable=False))
    status: MachineStatus = Field(sa_column=Column(String(32), nullable=False))
    action: str = Field(max_length=32)
    message: str = Field(default="", max_length=1024)
    at: datetime = Field(sa_column=_utc_column())


MACHINE_TABLES = frozenset(
    {
        Zone.__tablename__,
        ResourcePool.__tablename__,
        Machine.__tablename__,
        MachineInterface.__tablename__,
        MachineLink.__tablename__,
        StatusRecord.__tablename__,
    }
)
