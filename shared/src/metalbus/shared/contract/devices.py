"""Events the api service publishes about devices, and its make-known route's shapes.

A device is a thing on the network metalbus does not deploy (a printer, a switch, a
phone), kept so its MACs and addresses are known (MAAS's devices). The api owns the
inventory; each change is staged in its outbox in the transaction that made it.
``POST /api/v1/discovery/discoveries/make-known`` turns a discovery into a device or into
an interface of a machine or device (:class:`MakeKnownRequest`, answered :class:`MadeKnown`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..events import EventPayload, event
from .ipam import AddressType, Hostname, IPAddressText, MacAddress, Name

SERVICE = "api"


class IpAssignment(StrEnum):
    """How a device's interface gets its address (MAAS's device IP assignments)."""

    STATIC = "static"
    """A sticky address from ipam (the given one, or the next free of a subnet)."""
    DYNAMIC = "dynamic"
    """The device asks DHCP: the api records no address."""
    EXTERNAL = "external"
    """An address outside metalbus's control, reserved in ipam (``user_reserved``)."""


SystemId = Annotated[str, Field(min_length=1, max_length=16)]
InterfaceName = Annotated[str, Field(min_length=1, max_length=63)]
Description = Annotated[str, Field(max_length=1024, description="what it is: printer, switch...")]


class DeviceAddress(BaseModel):
    """One interface's address as events carry it."""

    mac: str
    ip_assignment: IpAssignment
    ip: str | None = Field(description="null for a dynamic interface")


class DeviceInfo(BaseModel):
    """A device as events carry it."""

    system_id: str
    hostname: str
    domain: str
    description: str
    parent: str | None = Field(description="the system id of its machine or device")
    zone: str
    tags: list[str]
    addresses: list[DeviceAddress]


@event(SERVICE, "device", "created")
class DeviceCreated(EventPayload):
    """A device was added: ``cause`` says how (``added`` by hand, ``discovered``)."""

    device: DeviceInfo
    cause: str


@event(SERVICE, "device", "updated")
class DeviceUpdated(EventPayload):
    """A device's attributes or interfaces changed."""

    device: DeviceInfo


@event(SERVICE, "device", "deleted")
class DeviceDeleted(EventPayload):
    """A device was deleted (its addresses were released); its last state."""

    device: DeviceInfo


# -- make-known (HTTP) ----------------------------------------------------------------------


class KnownAs(StrEnum):
    DEVICE = "device"
    INTERFACE = "interface"


class MakeKnownRequest(BaseModel):
    """Make a discovery (``ip`` seen at ``mac``) known.

    ``as: device`` (the default) adds a device whose interface ``eth0`` has the MAC:
    ``ip_assignment`` ``static`` records ``ip`` in ipam as sticky, ``external`` as
    user-reserved, ``dynamic`` records nothing (DHCP gives the address). ``hostname``,
    ``domain``, ``description``, ``parent`` and ``zone`` are the device's.

    ``as: interface`` adds the MAC as interface ``name`` of ``machine`` or ``device`` (one
    of the two), ``ip`` sticky in ipam for it.

    ``alloc_type`` (``sticky``: static, ``user_reserved``: external) is the older way of
    saying ``ip_assignment``, kept for clients written before devices.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ip: IPAddressText
    mac: MacAddress
    as_: KnownAs = Field(KnownAs.DEVICE, alias="as")
    hostname: Hostname | None = Field(None, description="device-<system_id> when not given")
    domain: Hostname | None = Field(None, description="maas when not given")
    description: Description | None = None
    ip_assignment: IpAssignment | None = Field(None, description="static when not given")
    alloc_type: Literal[AddressType.STICKY, AddressType.USER_RESERVED] | None = Field(
        None, description="deprecated: ip_assignment static or external"
    )
    parent: SystemId | None = Field(None, description="a machine's or device's system id")
    zone: Name | None = None
    machine: SystemId | None = Field(None, description="as interface: of this machine")
    device: SystemId | None = Field(None, description="as interface: of this device")
    name: InterfaceName | None = Field(
        None, description="as interface: first free ethN if not given"
    )


class MadeKnown(BaseModel):
    """What a discovery became."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    as_: KnownAs = Field(alias="as")
    system_id: str = Field(description="the device created, or the machine/device extended")
    interface: str = Field(description="the interface's name")
    mac: str
    ip_assignment: IpAssignment
    ip: str | None = Field(description="the address ipam recorded (null when dynamic)")
    address_id: int | None = Field(description="ipam's id of that address")
