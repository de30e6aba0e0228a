"""The ipam service's wire contract: its objects, commands and events.

The models here are what crosses the bus and what the HTTP API shows (the api service
forwards to ipam with these same models). Addresses travel as text (``10.0.0.5``,
``2001:db8::5``) and are normalised by the validators; counts of addresses are plain
integers, which may be as large as 2**128 for IPv6.

Objects and their rules follow MAAS:

- A **fabric** is a layer-2 domain; each is created with a default untagged VLAN (vid 0).
- A **VLAN** (vid 0-4094, unique in its fabric) carries subnets; ``dhcp_on`` hands its
  dynamic ranges to the boot service; ``relay_vlan_id`` relays DHCP to another VLAN.
- A **space** groups VLANs by purpose (e.g. ``storage``).
- A **subnet** (IPv4 or IPv6 CIDR) sits on one VLAN. Managed (the default): every address
  outside its ranges and infrastructure addresses may be assigned automatically. Unmanaged:
  only addresses inside its *reserved* ranges are.
- An **IP range** is ``dynamic`` (DHCP leases) or ``reserved`` (kept from automatic
  assignment on a managed subnet; the only automatic pool of an unmanaged one).
- An **IP address** is AUTO, STICKY or USER_RESERVED (assigned), DHCP (a lease the boot
  service reported) or DISCOVERED (seen on the wire by the discovery service).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_serializer

from ..commands import Command, Empty
from ..events import EventPayload, as_utc, event

SERVICE = "ipam"

# -- value types ------------------------------------------------------------------------


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


def _mac(value: str) -> str:
    digits = re.sub(r"[:\-.]", "", value.strip().lower())
    if not re.fullmatch(r"[0-9a-f]{12}", digits):
        raise ValueError(f"{value!r} is not a MAC address")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


IPAddressText = Annotated[str, AfterValidator(_address)]
"""An IPv4 or IPv6 address, normalised (``2001:DB8::0001`` becomes ``2001:db8::1``)."""
MacAddress = Annotated[str, AfterValidator(_mac)]
"""A MAC address, normalised to ``aa:bb:cc:dd:ee:ff``."""
Name = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Description = Annotated[str, Field(max_length=1024)]
# Ids are INTEGER columns (32-bit signed in PostgreSQL, 64 in SQLite): a larger number is
# refused here (422 naming the field) rather than overflowing the database driver (a 500).
MAX_ID = 2**31 - 1
ObjectId = Annotated[int, Field(ge=1, le=MAX_ID)]
Vid = Annotated[int, Field(ge=0, le=4094, description="802.1Q VLAN id; 0 is untagged")]
Mtu = Annotated[int, Field(ge=552, le=65535)]
Hostname = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$",
    ),
]


class AddressType(StrEnum):
    """How an address came to be used (MAAS's alloc types)."""

    AUTO = "auto"
    STICKY = "sticky"
    USER_RESERVED = "user_reserved"
    DHCP = "dhcp"
    DISCOVERED = "discovered"


ASSIGNABLE_TYPES = frozenset({AddressType.AUTO, AddressType.STICKY, AddressType.USER_RESERVED})
"""The types a caller may allocate; DHCP and DISCOVERED come from the boot and discovery events."""


class IpRangeType(StrEnum):
    """Dynamic ranges feed DHCP; reserved ranges are kept from automatic assignment."""

    DYNAMIC = "dynamic"
    RESERVED = "reserved"


class OwnerType(StrEnum):
    """What an address is assigned to."""

    MACHINE = "machine"
    INTERFACE = "interface"
    DEVICE = "device"
    USER = "user"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; metalbus stores UTC only.
    return None if value is None else as_utc(value)


UtcTime = Annotated[datetime, AfterValidator(_utc)]


class Stamped(BaseModel):
    """Every stored object: an id and when it was created and last changed (UTC)."""

    id: int
    created_at: UtcTime
    updated_at: UtcTime


# -- fabrics ------------------------------------------------------------------------------


class FabricCreate(_Input):
    """A new fabric; without a name it is called ``fabric-<id>``."""

    name: Name | None = None
    description: Description = ""
    class_type: Annotated[str, Field(max_length=100)] | None = None


class FabricUpdate(_Input):
    """Changes to a fabric (only the fields given change)."""

    name: Name | None = None
    description: Description | None = None
    class_type: Annotated[str, Field(max_length=100)] | None = None


class Fabric(Stamped):
    """A layer-2 domain."""

    name: str
    description: str
    class_type: str | None
    default_vlan_id: int


# -- spaces -------------------------------------------------------------------------------


class SpaceCreate(_Input):
    """A new space; without a name it is called ``space-<id>``."""

    name: Name | None = None
    description: Description = ""


class SpaceUpdate(_Input):
    """Changes to a space."""

    name: Name | None = None
    description: Description | None = None


class Space(Stamped):
    """A group of VLANs with one purpose."""

    name: str
    description: str


# -- VLANs --------------------------------------------------------------------------------


class VlanCreate(_Input):
    """A new VLAN in a fabric."""

    fabric_id: ObjectId
    vid: Vid
    name: Name | None = None
    mtu: Mtu = 1500
    dhcp_on: bool = False
    relay_vlan_id: ObjectId | None = None
    space_id: ObjectId | None = None
    description: Description = ""


class VlanUpdate(_Input):
    """Changes to a VLAN; ``relay_vlan_id`` or ``space_id`` set to null clears them."""

    vid: Vid | None = None
    name: Name | None = None
    mtu: Mtu | None = None
    dhcp_on: bool | None = None
    relay_vlan_id: ObjectId | None = None
    space_id: ObjectId | None = None
    description: Description | None = None
    external_dhcp: IPAddressText | None = Field(
        None, description="a DHCP server seen on the VLAN that is not metalbus (null clears)"
    )


class Vlan(Stamped):
    """A VLAN of a fabric."""

    fabric_id: int
    vid: int
    name: str | None
    mtu: int
    dhcp_on: bool
    external_dhcp: str | None
    relay_vlan_id: int | None
    space_id: int | None
    description: str


# -- subnets ------------------------------------------------------------------------------


ThresholdPercent = Annotated[
    float,
    Field(
        ge=0,
        le=100,
        description="percent of addresses left free under which `subnet.low_on_addresses` "
        "is published (null: the service's default)",
    ),
]
AddressList = Annotated[list[IPAddressText], Field(max_length=16)]
ArchitectureList = Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=16)]


class SubnetCreate(_Input):
    """A new subnet. Without ``vlan_id`` it goes on the default VLAN of the first fabric
    (``fabric-0``, created if there is none), as MAAS does."""

    cidr: Annotated[str, Field(min_length=1, max_length=64, examples=["10.0.0.0/24"])]
    vlan_id: ObjectId | None = None
    name: Name | None = Field(None, description="defaults to the CIDR")
    description: Description = ""
    gateway_ip: IPAddressText | None = None
    dns_servers: AddressList = Field(default_factory=list)
    ntp_servers: AddressList = Field(default_factory=list)
    domain: Hostname | None = None
    managed: bool = True
    allow_dns: bool = True
    active_discovery: bool = False
    disabled_boot_architectures: ArchitectureList = Field(default_factory=list)
    low_free_threshold: ThresholdPercent | None = None


class SubnetUpdate(_Input):
    """Changes to a subnet; the CIDR cannot change. ``gateway_ip`` null removes it."""

    vlan_id: ObjectId | None = None
    name: Name | None = None
    description: Description | None = None
    gateway_ip: IPAddressText | None = None
    dns_servers: AddressList | None = None
    ntp_servers: AddressList | None = None
    domain: Hostname | None = None
    managed: bool | None = None
    allow_dns: bool | None = None
    active_discovery: bool | None = None
    disabled_boot_architectures: ArchitectureList | None = None
    low_free_threshold: ThresholdPercent | None = None


class Subnet(Stamped):
    """An IPv4 or IPv6 subnet on a VLAN."""

    cidr: str
    ip_version: int
    name: str
    description: str
    vlan_id: int
    fabric_id: int
    space_id: int | None
    gateway_ip: str | None
    dns_servers: list[str]
    ntp_servers: list[str]
    domain: str | None
    managed: bool
    allow_dns: bool
    active_discovery: bool
    disabled_boot_architectures: list[str]
    low_free_threshold: float | None


class StaticRouteCreate(_Input):
    """A route from one subnet to another through a gateway inside the source subnet."""

    source_subnet_id: ObjectId
    destination_subnet_id: ObjectId
    gateway_ip: IPAddressText
    metric: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class StaticRouteUpdate(_Input):
    """Changes to a static route."""

    destination_subnet_id: ObjectId | None = None
    gateway_ip: IPAddressText | None = None
    metric: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None


class StaticRoute(Stamped):
    """A static route; its gateway is never assigned to anything else."""

    source_subnet_id: int
    destination_subnet_id: int
    destination_cidr: str
    gateway_ip: str
    metric: int


# -- IP ranges ----------------------------------------------------------------------------


class IpRangeCreate(_Input):
    """A dynamic or reserved range inside one subnet (both ends included)."""

    subnet_id: ObjectId | None = Field(
        None, description="the subnet; found from the addresses when omitted"
    )
    type: IpRangeType
    start_ip: IPAddressText
    end_ip: IPAddressText
    comment: Description = ""


class IpRangeUpdate(_Input):
    """Changes to a range (its subnet cannot change)."""

    type: IpRangeType | None = None
    start_ip: IPAddressText | None = None
    end_ip: IPAddressText | None = None
    comment: Description | None = None


class IpRange(Stamped):
    """A range of a subnet."""

    subnet_id: int
    type: IpRangeType
    start_ip: str
    end_ip: str
    size: int
    comment: str


# -- IP addresses -------------------------------------------------------------------------


class AddressOwner(_Input):
    """Who an address is for (all optional)."""

    owner_type: OwnerType | None = None
    owner_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    hostname: Hostname | None = None
    mac: MacAddress | None = Field(
        None, description="with a MAC, a static address is also a DHCP host reservation"
    )


class AllocateAddress(AddressOwner):
    """Assign an address: the given ``ip``, or the next free one of ``subnet_id``.

    Next free follows MAAS: the lowest address of the smallest free block, so large
    blocks stay whole. A retried request with the same ``idempotency_key`` gets the
    address the first one got.
    """

    subnet_id: ObjectId | None = None
    ip: IPAddressText | None = None
    alloc_type: AddressType = AddressType.AUTO
    idempotency_key: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class ReleaseAddress(_Input):
    """Release an assigned address by id or by address."""

    id: ObjectId | None = None
    ip: IPAddressText | None = None
    idempotency_key: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        None, description="a retried release with the same key answers as the first did"
    )


class IpAddress(Stamped):
    """An address in use."""

    subnet_id: int
    ip: str
    alloc_type: AddressType
    owner_type: OwnerType | None
    owner_id: str | None
    hostname: str | None
    mac: str | None
    lease_expires_at: UtcTime | None = Field(
        None, description="DHCP leases: when the lease ends and the address is freed"
    )


# -- statistics ---------------------------------------------------------------------------


class AddressBlock(BaseModel):
    """A run of consecutive addresses (both ends included)."""

    start: str
    end: str
    size: int


class RangeStatistics(BaseModel):
    """Use of one IP range."""

    range_id: int
    type: IpRangeType
    start_ip: str
    end_ip: str
    total: int
    used: int
    available: int
    utilisation: float


class SubnetStatistics(BaseModel):
    """Use of a subnet, as MAAS reports it.

    ``total`` counts the subnet's usable addresses (not an IPv4 network or broadcast
    address, not the IPv6 subnet-router anycast address); ``available`` the ones that can
    still be assigned automatically; ``used`` the rest (addresses in use, ranges, the
    gateway, DNS servers and route gateways).
    """

    subnet_id: int
    cidr: str
    ip_version: int
    total: int
    used: int
    available: int
    utilisation: float
    largest_free_block: AddressBlock | None
    free_blocks: list[AddressBlock]
    free_blocks_truncated: bool = Field(
        description="true when only the first `free_block_limit` blocks are listed"
    )
    ranges: list[RangeStatistics]
    suggested_gateway: str | None = Field(
        description="when the subnet has no gateway: its first usable address if free, "
        "else its last"
    )
    suggested_dynamic_range: AddressBlock | None = Field(
        description="when the subnet has no dynamic range: IPv4, the upper half of the "
        "largest free block; IPv6, 65536 addresses (or half the block, if smaller) at the "
        "top of the largest free block"
    )


# -- DHCP delegation ----------------------------------------------------------------------


class HostReservation(BaseModel):
    """A static address with a MAC: the DHCP server always gives this MAC this address."""

    address_id: int
    ip: str
    mac: str
    hostname: str | None


class DhcpSubnet(BaseModel):
    """What the boot service needs to serve DHCP on one subnet."""

    subnet: Subnet
    dynamic_ranges: list[IpRange]
    reservations: list[HostReservation]


class DhcpVlan(BaseModel):
    """A VLAN the boot service serves DHCP on, with its subnets."""

    vlan: Vlan
    subnets: list[DhcpSubnet]


class DhcpConfig(BaseModel):
    """Everything DHCP is delegated: VLANs with ``dhcp_on`` and VLANs relaying to them."""

    vlans: list[DhcpVlan]


# -- requests common to every kind of object ----------------------------------------------

FieldsT = TypeVar("FieldsT", bound=BaseModel)
ItemT = TypeVar("ItemT", bound=BaseModel)


class ById(_Input):
    """Names one object."""

    id: ObjectId


class DeleteRequest(ById):
    """Delete one object; ``force`` deletes what it holds too (a subnet's addresses)."""

    force: bool = False


class UpdateRequest(_Input, Generic[FieldsT]):
    """Change one object: only the fields present in ``changes`` change.

    On the wire ``changes`` carries only the fields that were set (an explicit null
    included), so the owner can tell "clear this" from "leave this alone".
    """

    id: ObjectId
    changes: FieldsT

    @field_serializer("changes")
    def _only_fields_set(self, changes: FieldsT) -> dict[str, Any]:
        return changes.model_dump(mode="json", exclude_unset=True)


class PageRequest(_Input):
    """One page of a list, in id order: pass the last id seen as ``after``."""

    after: Annotated[int, Field(ge=0, le=MAX_ID)] = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class Page(BaseModel, Generic[ItemT]):
    """A page of objects; ``next`` is the ``after`` of the next page, null at the end."""

    items: list[ItemT]
    next: int | None = None


class VlanQuery(PageRequest):
    """VLANs, optionally of one fabric or one space."""

    fabric_id: ObjectId | None = None
    space_id: ObjectId | None = None


class SubnetQuery(PageRequest):
    """Subnets, optionally by VLAN, fabric, space or a contained address."""

    vlan_id: ObjectId | None = None
    fabric_id: ObjectId | None = None
    space_id: ObjectId | None = None
    contains: IPAddressText | None = Field(None, description="the subnet holding this address")


class StaticRouteQuery(PageRequest):
    """Static routes, optionally from one subnet."""

    source_subnet_id: ObjectId | None = None


class IpRangeQuery(PageRequest):
    """IP ranges, optionally of one subnet or type."""

    subnet_id: ObjectId | None = None
    type: IpRangeType | None = None


class IpAddressQuery(PageRequest):
    """Addresses in use, filtered by any of these."""

    subnet_id: ObjectId | None = None
    alloc_type: AddressType | None = None
    owner_type: OwnerType | None = None
    owner_id: Annotated[str, Field(max_length=64)] | None = None
    mac: MacAddress | None = None
    ip: IPAddressText | None = None


class StatisticsRequest(ById):
    """Statistics of one subnet; at most ``free_block_limit`` free blocks are listed."""

    free_block_limit: Annotated[int, Field(ge=0, le=10000)] = 100


# -- commands -----------------------------------------------------------------------------


ReqT = TypeVar("ReqT", bound=BaseModel)
RespT = TypeVar("RespT", bound=BaseModel)


def _cmd(
    action: str, request: type[ReqT], response: type[RespT], description: str
) -> Command[ReqT, RespT]:
    # Writes wait behind the subnet lock under heavy contention: a generous timeout.
    return Command(SERVICE, action, request, response, timeout=10.0, description=description)


FABRIC_CREATE = _cmd("fabric_create", FabricCreate, Fabric, "Create a fabric (and its VLAN 0)")
FABRIC_GET = _cmd("fabric_get", ById, Fabric, "One fabric")
FABRIC_LIST = _cmd("fabric_list", PageRequest, Page[Fabric], "Fabrics, by id")
FABRIC_UPDATE = _cmd("fabric_update", UpdateRequest[FabricUpdate], Fabric, "Change a fabric")
FABRIC_DELETE = _cmd("fabric_delete", DeleteRequest, Fabric, "Delete an unused fabric")

SPACE_CREATE = _cmd("space_create", SpaceCreate, Space, "Create a space")
SPACE_GET = _cmd("space_get", ById, Space, "One space")
SPACE_LIST = _cmd("space_list", PageRequest, Page[Space], "Spaces, by id")
SPACE_UPDATE = _cmd("space_update", UpdateRequest[SpaceUpdate], Space, "Change a space")
SPACE_DELETE = _cmd("space_delete", DeleteRequest, Space, "Delete a space (its VLANs keep none)")

VLAN_CREATE = _cmd("vlan_create", VlanCreate, Vlan, "Create a VLAN in a fabric")
VLAN_GET = _cmd("vlan_get", ById, Vlan, "One VLAN")
VLAN_LIST = _cmd("vlan_list", VlanQuery, Page[Vlan], "VLANs, by id")
VLAN_UPDATE = _cmd("vlan_update", UpdateRequest[VlanUpdate], Vlan, "Change a VLAN")
VLAN_DELETE = _cmd("vlan_delete", DeleteRequest, Vlan, "Delete a VLAN with no subnets")

SUBNET_CREATE = _cmd("subnet_create", SubnetCreate, Subnet, "Create a subnet")
SUBNET_GET = _cmd("subnet_get", ById, Subnet, "One subnet")
SUBNET_LIST = _cmd("subnet_list", SubnetQuery, Page[Subnet], "Subnets, by id")
SUBNET_UPDATE = _cmd("subnet_update", UpdateRequest[SubnetUpdate], Subnet, "Change a subnet")
SUBNET_DELETE = _cmd(
    "subnet_delete", DeleteRequest, Subnet, "Delete a subnet (with addresses: only with force)"
)
SUBNET_STATISTICS = _cmd(
    "subnet_statistics", StatisticsRequest, SubnetStatistics, "Use of a subnet and its ranges"
)

ROUTE_CREATE = _cmd("route_create", StaticRouteCreate, StaticRoute, "Create a static route")
ROUTE_GET = _cmd("route_get", ById, StaticRoute, "One static route")
ROUTE_LIST = _cmd("route_list", StaticRouteQuery, Page[StaticRoute], "Static routes, by id")
ROUTE_UPDATE = _cmd(
    "route_update", UpdateRequest[StaticRouteUpdate], StaticRoute, "Change a static route"
)
ROUTE_DELETE = _cmd("route_delete", DeleteRequest, StaticRoute, "Delete a static route")

RANGE_CREATE = _cmd("range_create", IpRangeCreate, IpRange, "Create a dynamic or reserved range")
RANGE_GET = _cmd("range_get", ById, IpRange, "One IP range")
RANGE_LIST = _cmd("range_list", IpRangeQuery, Page[IpRange], "IP ranges, by id")
RANGE_UPDATE = _cmd("range_update", UpdateRequest[IpRangeUpdate], IpRange, "Change an IP range")
RANGE_DELETE = _cmd("range_delete", DeleteRequest, IpRange, "Delete an IP range")

ADDRESS_ALLOCATE = _cmd(
    "address_allocate", AllocateAddress, IpAddress, "Assign a given or the next free address"
)
ADDRESS_RELEASE = _cmd("address_release", ReleaseAddress, IpAddress, "Release an address")
ADDRESS_GET = _cmd("address_get", ById, IpAddress, "One address in use")
ADDRESS_LIST = _cmd("address_list", IpAddressQuery, Page[IpAddress], "Addresses in use, by id")

DHCP_CONFIG = _cmd(
    "dhcp_config", Empty, DhcpConfig, "What DHCP serves: VLANs, subnets, ranges, reservations"
)

# -- events -------------------------------------------------------------------------------


@event(SERVICE, "fabric", "created")
class FabricCreated(EventPayload):
    """A fabric was created (its default VLAN has its own event)."""

    fabric: Fabric


@event(SERVICE, "fabric", "updated")
class FabricUpdated(EventPayload):
    """A fabric changed."""

    fabric: Fabric


@event(SERVICE, "fabric", "deleted")
class FabricDeleted(EventPayload):
    """A fabric was deleted; the payload is its last state."""

    fabric: Fabric


@event(SERVICE, "space", "created")
class SpaceCreated(EventPayload):
    """A space was created."""

    space: Space


@event(SERVICE, "space", "updated")
class SpaceUpdated(EventPayload):
    """A space changed."""

    space: Space


@event(SERVICE, "space", "deleted")
class SpaceDeleted(EventPayload):
    """A space was deleted; the payload is its last state."""

    space: Space


@event(SERVICE, "vlan", "created")
class VlanCreated(EventPayload):
    """A VLAN was created."""

    vlan: Vlan


@event(SERVICE, "vlan", "updated")
class VlanUpdated(EventPayload):
    """A VLAN changed (``dhcp_on`` among others: the boot service follows it)."""

    vlan: Vlan


@event(SERVICE, "vlan", "deleted")
class VlanDeleted(EventPayload):
    """A VLAN was deleted; the payload is its last state."""

    vlan: Vlan


@event(SERVICE, "subnet", "created")
class SubnetCreated(EventPayload):
    """A subnet was created."""

    subnet: Subnet


@event(SERVICE, "subnet", "updated")
class SubnetUpdated(EventPayload):
    """A subnet changed."""

    subnet: Subnet


@event(SERVICE, "subnet", "deleted")
class SubnetDeleted(EventPayload):
    """A subnet was deleted, and with it its addresses (with ``force``; no event each) and
    its ranges and routes (an event each)."""

    subnet: Subnet
    addresses_released: int = 0


@event(SERVICE, "subnet", "exhausted")
class SubnetExhausted(EventPayload):
    """An allocation found no free address in the subnet."""

    subnet_id: int
    cidr: str
    requested_by: str | None = None


@event(SERVICE, "subnet", "low_on_addresses")
class SubnetLowOnAddresses(EventPayload):
    """The subnet's free addresses fell below its threshold (published once per crossing)."""

    subnet_id: int
    cidr: str
    available: int
    total: int
    threshold: float


@event(SERVICE, "route", "created")
class StaticRouteCreated(EventPayload):
    """A static route was created."""

    route: StaticRoute


@event(SERVICE, "route", "updated")
class StaticRouteUpdated(EventPayload):
    """A static route changed."""

    route: StaticRoute


@event(SERVICE, "route", "deleted")
class StaticRouteDeleted(EventPayload):
    """A static route was deleted; the payload is its last state."""

    route: StaticRoute


@event(SERVICE, "range", "created")
class IpRangeCreated(EventPayload):
    """An IP range was created (a dynamic one is delegated to DHCP)."""

    range: IpRange
    vlan_id: int


@event(SERVICE, "range", "updated")
class IpRangeUpdated(EventPayload):
    """An IP range changed."""

    range: IpRange
    vlan_id: int


@event(SERVICE, "range", "deleted")
class IpRangeDeleted(EventPayload):
    """An IP range was deleted; the payload is its last state."""

    range: IpRange
    vlan_id: int


@event(SERVICE, "address", "allocated")
class AddressAllocated(EventPayload):
    """An address came into use (assigned, leased or discovered).

    A static address with a MAC is a DHCP host reservation for the boot service.
    """

    address: IpAddress
    vlan_id: int


@event(SERVICE, "address", "released")
class AddressReleased(EventPayload):
    """An address is free again: released, its lease ended, or its subnet was deleted."""

    address: IpAddress
    vlan_id: int
    reason: Annotated[str, Field(description="released, expired, lease_released, cleared, ...")]
