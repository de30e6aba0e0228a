"""The discovery service's wire contract: neighbour events, discoveries, scans.

The discovery service listens on its configured interfaces (ARP, IPv6 neighbour
discovery) and records every (IP, MAC) it sees as a *neighbour*. ipam counts every observed
address as used (a DISCOVERED address), so it is never handed out while something on the
wire answers to it. A *discovery* is a neighbour joined with what metalbus knows: the
subnet, VLAN and fabric holding the address, whether ipam has the address or the MAC
assigned to something, and the MAC's vendor.

An active *scan* sends ARP requests to every address of an IPv4 subnet directly attached
to one of the service's interfaces; the answers are observations like any other. A subnet
behind a router (reached by a route other than the default one) is swept with ICMP echo
requests instead, and each address that answers is a ``discovery.host.answered``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..commands import Command
from ..events import EventPayload, event
from .ipam import (
    AddressType,
    Hostname,
    IpAddress,
    IPAddressText,
    MacAddress,
    Page,
    PageRequest,
    UtcTime,
)

SERVICE = "discovery"

InterfaceName = Annotated[str, Field(min_length=1, max_length=15, pattern=r"^[^/\s]+$")]

# -- events ipam consumes (their fields are a contract: add, never change) -----------------


class NeighbourObservation(EventPayload):
    """An IP address answered by a MAC, seen on an interface (ARP, NDP or a scan)."""

    ip: IPAddressText
    mac: MacAddress
    interface: str = Field(max_length=64)
    vid: int | None = Field(None, ge=0, le=4094)
    seen_at: datetime


@event("discovery", "neighbour", "new")
class NeighbourNew(NeighbourObservation):
    """An address or MAC never seen before on this interface."""


@event("discovery", "neighbour", "refreshed")
class NeighbourRefreshed(NeighbourObservation):
    """A known neighbour was seen again (throttled)."""


@event("discovery", "neighbour", "moved")
class NeighbourMoved(NeighbourObservation):
    """An address is now answered by another MAC."""

    previous_mac: MacAddress


@event("discovery", "neighbour", "cleared")
class NeighbourCleared(EventPayload):
    """An operator cleared a neighbour: it no longer counts as seen."""

    ip: IPAddressText
    mac: MacAddress


@event("discovery", "mdns", "name_seen")
class MdnsNameSeen(EventPayload):
    """A host announced a ``.local`` name for an address (mDNS): new, or a new name."""

    ip: IPAddressText
    hostname: str = Field(max_length=253)
    interface: str = Field(max_length=64)
    vid: int | None = Field(None, ge=0, le=4094)
    seen_at: datetime


# -- scans ----------------------------------------------------------------------------------


class ScanState(StrEnum):
    """Where a scan is."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScanMethod(StrEnum):
    """How a scan asks: ARP on an attached network, ICMP echo through a router."""

    ARP = "arp"
    PING = "ping"


class ScanRequest(_Input):
    """Sweep an IPv4 subnet of at most ``METALBUS_DISCOVERY_SCAN_MAX_ADDRESSES`` addresses.

    A subnet inside a network configured on ``interface`` (directly attached) is swept
    with ARP requests; otherwise, when the host has a route to the whole subnet other than
    the default route (through ``interface`` if given), with ICMP echo requests (ping).
    Without ``interface`` the first interface of the service holding the subnet is used,
    else the route's.
    """

    cidr: Annotated[str, Field(min_length=1, max_length=64, examples=["10.0.0.0/24"])]
    interface: InterfaceName | None = None


class Scan(BaseModel):
    """A scan: what was asked, how far it got, how many addresses answered."""

    id: int
    cidr: str
    interface: str
    method: ScanMethod = ScanMethod.ARP
    state: ScanState
    probes: int = Field(description="requests to send (ARP or ICMP echo, one per address)")
    sent: int = Field(description="requests sent so far")
    answered: int = Field(description="addresses of the subnet that answered during the scan")
    error: str | None = None
    started_at: UtcTime
    finished_at: UtcTime | None = None


@event("discovery", "scan", "completed")
class ScanCompleted(EventPayload):
    """A scan finished (``state`` done) or stopped on an error (``state`` failed)."""

    scan: Scan


@event("discovery", "host", "answered")
class HostAnswered(EventPayload):
    """An address of a routed subnet answered a ping scan (its MAC is not seen: the
    answer comes through a router). Published with the scan's ``scan.completed``."""

    ip: IPAddressText
    interface: str = Field(max_length=64, description="the interface the route goes through")
    scan_id: int
    seen_at: datetime


class ScanQuery(PageRequest):
    """Scans, newest last (by id)."""


class ScanById(_Input):
    """One scan."""

    id: Annotated[int, Field(ge=1)]


# -- rogue DHCP -----------------------------------------------------------------------------


class DhcpProbe(_Input):
    """Broadcast one DHCPDISCOVER on ``interface`` (default: the first listened on)."""

    interface: InterfaceName | None = None


class DhcpServerSeen(BaseModel):
    """A DHCP server that answered a probe with an OFFER."""

    interface: str
    server_ip: str = Field(description="its server identifier (option 54)")
    server_mac: str | None = Field(description="its MAC, when discovery has seen it")
    offered_ip: str
    external: bool = Field(description="not one of metalbus's own DHCP servers")
    vlan_id: int | None = Field(None, description="ipam's VLAN of the server's subnet")
    seen_at: UtcTime


class DhcpProbeResult(BaseModel):
    """Every server that offered an address to one probe."""

    interface: str
    servers: list[DhcpServerSeen]


@event("discovery", "dhcp", "server_seen")
class DhcpServerFound(EventPayload):
    """A DHCP server other than metalbus answers on an interface (rogue or external).

    ipam's VLAN of the server's subnet is marked with it (``external_dhcp``).
    """

    interface: str = Field(max_length=64)
    server_ip: IPAddressText
    server_mac: MacAddress | None = None
    offered_ip: IPAddressText
    vlan_id: int | None = None
    seen_at: datetime


# -- discoveries ----------------------------------------------------------------------------


class Unknown(StrEnum):
    """Which discoveries to list by what metalbus does not know about them."""

    MAC = "mac"
    IP = "ip"
    BOTH = "both"


class DiscoveryQuery(PageRequest):
    """Discoveries by id; filtered by what is unknown, by subnet, by MAC or by address.

    ``unknown=mac``: the MAC is on no address ipam has assigned; ``ip``: ipam has the
    address assigned to nothing (free, or only DISCOVERED/DHCP); ``both``: both at once.
    """

    unknown: Unknown | None = None
    subnet_id: Annotated[int, Field(ge=1)] | None = None
    mac: MacAddress | None = None
    ip: IPAddressText | None = None


class Discovery(BaseModel):
    """A neighbour joined with what metalbus knows about its address and MAC."""

    id: int
    ip: str
    mac: str
    vid: int | None
    interface: str
    observer: str = Field(description="the discovery replica that saw it")
    vendor: str | None = Field(description="the MAC's vendor (IEEE OUI registry)")
    hostname: str | None = Field(None, description="the name it announced over mDNS")
    first_seen: UtcTime
    last_seen: UtcTime
    count: int = Field(description="how many times it was seen")
    subnet_id: int | None
    subnet_cidr: str | None
    vlan_id: int | None
    fabric_id: int | None
    ip_known: bool = Field(description="ipam has the address assigned (auto/sticky/reserved)")
    mac_known: bool = Field(description="the MAC is on an address ipam has assigned")


class ClearRequest(_Input):
    """Clear discoveries: those of ``mac`` and/or ``ip``, or every one with ``all``.

    Each cleared neighbour publishes ``discovery.neighbour.cleared`` (ipam frees the
    DISCOVERED address).
    """

    mac: MacAddress | None = None
    ip: IPAddressText | None = None
    all: bool = False


class ClearResult(BaseModel):
    """How many neighbours were cleared."""

    cleared: int


class MakeKnown(_Input):
    """Make a discovery known: its address is assigned in ipam to a device, with its MAC.

    The address becomes ``sticky`` (or ``user_reserved``) owned by ``device``
    ``owner_id`` (the MAC when not given), taking over ipam's DISCOVERED record; the
    discovery then lists as IP and MAC known. This bus command records no device: the
    HTTP route makes the api's device or interface (``contract.devices.MakeKnownRequest``).
    """

    ip: IPAddressText
    mac: MacAddress
    hostname: Hostname | None = None
    alloc_type: Literal[AddressType.STICKY, AddressType.USER_RESERVED] = AddressType.STICKY
    owner_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


# -- commands -------------------------------------------------------------------------------

DISCOVERY_LIST = Command(
    SERVICE,
    "discovery_list",
    DiscoveryQuery,
    Page[Discovery],
    timeout=15.0,
    description="Discoveries (neighbours joined with ipam), by id, filtered",
)
DISCOVERY_CLEAR = Command(
    SERVICE,
    "discovery_clear",
    ClearRequest,
    ClearResult,
    timeout=10.0,
    description="Forget neighbours: by MAC and/or IP, or all",
)
DISCOVERY_MAKE_KNOWN = Command(
    SERVICE,
    "discovery_make_known",
    MakeKnown,
    IpAddress,
    timeout=15.0,
    description="Assign a discovery's address in ipam to a device (sticky or user_reserved)",
)
SCAN_START = Command(
    SERVICE,
    "scan_start",
    ScanRequest,
    Scan,
    timeout=10.0,
    description="Start a sweep of an IPv4 subnet: ARP if directly attached, else ICMP echo",
)
DHCP_PROBE = Command(
    SERVICE,
    "dhcp_probe",
    DhcpProbe,
    DhcpProbeResult,
    timeout=15.0,
    description="Look for DHCP servers on an interface (one DHCPDISCOVER, the OFFERs)",
)
SCAN_GET = Command(SERVICE, "scan_get", ScanById, Scan, description="One scan")
SCAN_LIST = Command(SERVICE, "scan_list", ScanQuery, Page[Scan], description="Scans, by id")
