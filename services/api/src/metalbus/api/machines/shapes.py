"""What the machine, zone and pool routes take and answer (the tables are in :mod:`.models`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from metalbus.shared.contract.ipam import Hostname, IPAddressText, MacAddress, Name, ObjectId
from metalbus.shared.contract.machines import MachineStatus
from metalbus.shared.contract.power import DriverName

from .models import LinkMode

Tag = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Architecture = Annotated[
    str, Field(min_length=1, max_length=40, pattern=r"^[a-z0-9]+(/[a-z0-9._-]+)?$")
]

# -- zones and pools ----------------------------------------------------------------------


class NamedCreate(BaseModel):
    """Body of ``POST /zones`` and ``POST /pools``."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Annotated[str, Field(max_length=1024)] = ""


class NamedUpdate(BaseModel):
    """Body of ``PATCH /zones/{id}`` and ``PATCH /pools/{id}``: only what is given changes."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Annotated[str, Field(max_length=1024)] | None = None


class NamedPublic(BaseModel):
    """A zone or a pool as the API shows it."""

    id: int
    name: str
    description: str
    created_at: datetime
    updated_at: datetime


# -- requests -----------------------------------------------------------------------------


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PowerSpec(_Input):
    """How the machine's power is reached: a power driver and its settings.

    The settings (secrets included) go to the power service, which checks them against the
    driver's schema (``GET /power/drivers``) and keeps them; the api keeps only the BMC id.
    """

    driver: DriverName
    settings: dict[str, Any] = Field(default_factory=dict)


class InterfaceCreate(_Input):
    """A network interface given by hand."""

    name: Annotated[str, Field(min_length=1, max_length=63)]
    mac: MacAddress
    vlan_id: ObjectId | None = None


class MachineCreate(_Input):
    """A machine added by hand (it starts New, like an enlisted one)."""

    hostname: Hostname | None = None
    domain: Hostname = "maas"
    architecture: Architecture = "amd64/generic"
    interfaces: Annotated[list[InterfaceCreate], Field(min_length=1, max_length=64)]
    power: PowerSpec | None = None
    zone: Name | None = None
    pool: Name | None = None
    tags: Annotated[list[Tag], Field(max_length=64)] = Field(default_factory=list)


class MachineUpdate(_Input):
    """Changes to a machine: only the fields given change."""

    hostname: Hostname | None = None
    domain: Hostname | None = None
    architecture: Architecture | None = None
    power: PowerSpec | None = None
    zone: Name | None = None
    pool: Name | None = None
    tags: Annotated[list[Tag], Field(max_length=64)] | None = None


class LinkCreate(_Input):
    """Link an interface to a subnet (``ip`` only, and required, for ``static``)."""

    mode: LinkMode
    subnet_id: ObjectId | None = None
    ip: IPAddressText | None = None


class AllocateRequest(_Input):
    """What the machine must have; the first Ready machine that has it is allocated.

    ``storage``: ``label:size(tag,...)`` entries separated by commas, sizes in GB; each
    needs its own disk at least that large. ``interfaces``: ``label:key=value,...`` entries
    separated by semicolons, keys ``subnet`` (id) and ``vlan`` (id); each needs its own
    interface linked there. When no Ready machine fits and ``compose`` is true, a KVM host
    that can compose one does (the interface constraints go to compose as they are).
    """

    cores: Annotated[int, Field(ge=1, le=4096)] | None = None
    memory: Annotated[int, Field(ge=1, description="MiB")] | None = None
    architecture: Architecture | None = None
    tags: Annotated[list[Tag], Field(max_length=64)] = Field(default_factory=list)
    zone: Name | None = None
    pool: Name | None = None
    storage: Annotated[str, Field(max_length=1024)] | None = None
    interfaces: Annotated[str, Field(max_length=2048)] | None = None
    system_id: Annotated[str, Field(max_length=16)] | None = None
    compose: bool = True


class DeployRequest(_Input):
    """Deploy an allocated machine; with ``install_kvm`` it becomes a KVM host once deployed."""

    install_kvm: bool = False


class ReleaseRequest(_Input):
    """Release a machine (powered off, addresses released, composed ones decomposed)."""


class DiskReport(_Input):
    """A disk the commissioning environment found."""

    name: Annotated[str, Field(min_length=1, max_length=63)]
    size: Annotated[int, Field(ge=0, description="bytes")]
    model: Annotated[str, Field(max_length=255)] = ""
    serial: Annotated[str, Field(max_length=255)] = ""


class NicReport(_Input):
    """A network interface the commissioning environment found."""

    name: Annotated[str, Field(min_length=1, max_length=63)]
    mac: MacAddress


class CommissioningReport(_Input):
    """What the commissioning environment posts back: the machine's hardware."""

    cores: Annotated[int, Field(ge=1, le=4096)]
    memory: Annotated[int, Field(ge=1, description="MiB")]
    architecture: Architecture | None = None
    disks: Annotated[list[DiskReport], Field(max_length=256)] = Field(default_factory=list)
    interfaces: Annotated[list[NicReport], Field(min_length=1, max_length=256)]


class DeployReport(_Input):
    """What the deploy (or testing) environment posts back when it is done."""

    result: Annotated[str, Field(pattern=r"^(success|failure)$")]
    message: Annotated[str, Field(max_length=1024)] = ""


# -- public shapes ------------------------------------------------------------------------


class LinkPublic(BaseModel):
    id: int
    mode: LinkMode
    subnet_id: int | None
    vlan_id: int | None
    ip: str | None = None


class InterfacePublic(BaseModel):
    id: int
    name: str
    mac: str
    vlan_id: int | None
    links: list[LinkPublic]


class PowerPublic(BaseModel):
    driver: str | None
    bmc_id: int | None
    settings: dict[str, Any] = Field(description="the driver's settings without secrets")


class MachinePublic(BaseModel):
    """A machine as the API shows it."""

    system_id: str
    hostname: str
    domain: str
    fqdn: str
    status: MachineStatus
    status_changed_at: datetime
    architecture: str
    cores: int
    memory: int = Field(description="MiB")
    storage: int = Field(description="bytes, every disk")
    disks: list[dict[str, Any]]
    tags: list[str]
    zone: str
    pool: str
    owner: str | None
    power: PowerPublic
    interfaces: list[InterfacePublic]
    pod_id: int | None
    vm_id: int | None
    install_kvm: bool
    flow: str | None = Field(description="the flow working on the machine, if any")
    flow_step: str | None
    flow_error: str | None
    boot_progress: str | None = Field(
        description='the last boot file fetched in this status ("kernel fetched"), if any'
    )
    boot_progress_at: datetime | None
    created_at: datetime
    updated_at: datetime


class StatusPublic(BaseModel):
    previous: MachineStatus
    status: MachineStatus
    action: str
    message: str
    at: datetime
