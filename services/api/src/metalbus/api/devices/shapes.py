"""What the device routes and make-known take and answer (the tables are in :mod:`.models`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from metalbus.shared.contract.devices import Description, InterfaceName, IpAssignment, SystemId
from metalbus.shared.contract.ipam import Hostname, IPAddressText, MacAddress, Name, ObjectId

from ..machines.shapes import Tag


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Addressing(_Input):
    """How an interface gets its address.

    ``static``: a sticky address from ipam, ``ip`` if given, else the next free one of
    ``subnet_id``. ``dynamic``: DHCP, nothing recorded (``ip`` not taken). ``external``:
    ``ip`` (required) is outside metalbus's control and reserved in ipam.
    """

    ip_assignment: IpAssignment = IpAssignment.DYNAMIC
    ip: IPAddressText | None = None
    subnet_id: ObjectId | None = None


class DeviceInterfaceCreate(Addressing):
    """A device's interface (``POST /devices/{system_id}/interfaces``, or in a create)."""

    name: InterfaceName | None = Field(None, description="eth0, eth1... when not given")
    mac: MacAddress


class DeviceCreate(_Input):
    """A device added by hand."""

    hostname: Hostname | None = None
    domain: Hostname = "maas"
    description: Description = ""
    parent: SystemId | None = Field(None, description="a machine's or device's system id")
    zone: Name | None = None
    tags: Annotated[list[Tag], Field(max_length=64)] = Field(default_factory=list)
    interfaces: Annotated[list[DeviceInterfaceCreate], Field(min_length=1, max_length=64)]


class DeviceUpdate(_Input):
    """Changes to a device: only the fields given change (``parent: null`` clears it)."""

    hostname: Hostname | None = None
    domain: Hostname | None = None
    description: Description | None = None
    parent: SystemId | None = None
    zone: Name | None = None
    tags: Annotated[list[Tag], Field(max_length=64)] | None = None


class DeviceInterfacePublic(BaseModel):
    id: int
    name: str
    mac: str
    ip_assignment: IpAssignment
    subnet_id: int | None
    ip: str | None = Field(description="null for a dynamic interface")


class DevicePublic(BaseModel):
    """A device as the API shows it."""

    system_id: str
    hostname: str
    domain: str
    fqdn: str
    description: str
    parent: str | None
    zone: str
    tags: list[str]
    interfaces: list[DeviceInterfacePublic]
    created_at: datetime
    updated_at: datetime
