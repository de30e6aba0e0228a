"""The compose service's wire contract: KVM hosts ("pods"), the VMs composed on them, events.

A **KVM host** is a libvirt endpoint (``qemu+ssh://user@host/system``, ``qemu:///system``,
``test:///<file>.xml``) with its credentials (an SSH key or a password: sealed at rest,
never shown again, only *which* ones are set), overcommit ratios, a default storage pool
and a default macvlan mode. On add and on refresh the service discovers what the host has:
architecture, cores, CPU speed, memory, storage pools, libvirt networks, host interfaces
and the VMs already there.

A host is **correlated** when one of its addresses is known to ipam as an address of a
machine or a device; only then are its interfaces mapped to VLANs, subnets and spaces, and
only then may a compose request carry interface constraints.

**Composing** follows MAAS's rules (see ``docs/compose.md``): resources are checked before
libvirt is touched (a refusal names what is short and by how much); interfaces attach to a
host bridge (``<interface type='bridge'>``) or through macvtap (``<interface
type='direct'>``); without constraints the attachment depends on how KVM came to the host
(``origin``). Every step is an event; ``vm.composed`` is what the api turns into a machine.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ..commands import Command
from ..events import EventPayload, event
from .ipam import ById, Hostname, Name, ObjectId, Page, PageRequest, Stamped, UpdateRequest

SERVICE = "compose"


class MacvlanMode(StrEnum):
    """macvtap modes (libvirt ``<source mode=...>`` of a ``direct`` interface)."""

    PRIVATE = "private"
    VEPA = "vepa"
    BRIDGE = "bridge"
    PASSTHRU = "passthru"


class HostOrigin(StrEnum):
    """How KVM came to the host: it decides where a VM without constraints attaches."""

    DEPLOYED = "deployed"
    """metalbus deployed the machine as a KVM host."""
    MANUAL = "manual"
    """KVM was installed by hand (on a machine metalbus may not know)."""


class HostInterfaceType(StrEnum):
    """What a host interface is."""

    BRIDGE = "bridge"
    PHYSICAL = "physical"
    BOND = "bond"
    VLAN = "vlan"


class AttachmentType(StrEnum):
    """How a VM's interface is attached on the host."""

    BRIDGE = "bridge"
    """``<interface type='bridge'>`` on a host bridge."""
    MACVLAN = "macvlan"
    """``<interface type='direct'>``: macvtap on a non-bridge host interface."""
    NETWORK = "network"
    """``<interface type='network'>`` on a libvirt network."""


class VmPowerState(StrEnum):
    """A VM's state as libvirt reports it."""

    ON = "on"
    OFF = "off"
    PAUSED = "paused"
    UNKNOWN = "unknown"


class VmStatus(StrEnum):
    """Where a VM row is in its life."""

    COMPOSING = "composing"
    """Resources are reserved; libvirt is being asked."""
    READY = "ready"
    """Composed by metalbus (or found on the host), defined in libvirt."""


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


Ratio = Annotated[float, Field(gt=0, le=1000, description="overcommit ratio (> 0)")]
Uri = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[a-z][a-z0-9+.-]*:/",
        examples=["qemu+ssh://root@kvm1/system", "qemu:///system"],
    ),
]
Secret = Annotated[
    str,
    Field(
        min_length=1, max_length=16384, json_schema_extra={"writeOnly": True, "format": "password"}
    ),
]
Label = Annotated[str, Field(min_length=1, max_length=63)]
Tags = Annotated[list[Annotated[str, Field(min_length=1, max_length=63)]], Field(max_length=64)]

# -- what a host has ----------------------------------------------------------------------


class StoragePool(BaseModel):
    """A libvirt storage pool of a host (sizes in bytes)."""

    name: str
    type: str
    path: str | None
    total: int
    used: int
    available: int
    active: bool


class LibvirtNetwork(BaseModel):
    """A libvirt network of a host."""

    name: str
    bridge: str | None
    dhcp: bool = Field(description="libvirt's own dnsmasq serves DHCP on it")
    active: bool
    addresses: list[str] = Field(description="the network's own addresses, CIDR form")


class InterfaceLink(BaseModel):
    """One address of a host interface and, on a correlated host, where ipam puts it."""

    address: str = Field(description="CIDR form: 10.0.0.2/24")
    subnet_id: int | None = None
    cidr: str | None = None
    vlan_id: int | None = None
    vid: int | None = None
    fabric_id: int | None = None
    space_id: int | None = None


class HostInterface(BaseModel):
    """A network interface of the host, as libvirt reports it."""

    name: str
    type: HostInterfaceType
    mac: str | None
    active: bool
    members: list[str] = Field(description="a bridge's ports, a bond's slaves, a VLAN's parent")
    links: list[InterfaceLink]


class VmDisk(BaseModel):
    """A disk of a VM: a volume in a storage pool."""

    label: str
    pool: str
    volume: str
    size: int = Field(description="bytes")
    tags: list[str] = Field(default_factory=list)


class VmInterface(BaseModel):
    """A network interface of a VM and what it is attached to on the host."""

    name: str
    mac: str
    attach_type: AttachmentType
    source: str = Field(description="the host bridge, interface or libvirt network")
    mode: MacvlanMode | None = None
    ip: str | None = Field(None, description="the address assigned to it in ipam (sticky)")
    ip_id: int | None = Field(None, description="ipam's id of that address")


class Vm(Stamped):
    """A VM on a KVM host: composed by metalbus, or found there by discovery."""

    host_id: int
    name: str
    uuid: str
    status: VmStatus
    composed: bool = Field(description="false for a VM discovery found on the host")
    cores: int
    memory: int = Field(description="MiB")
    architecture: str
    power_state: VmPowerState
    zone: str | None
    pool: str | None
    disks: list[VmDisk]
    interfaces: list[VmInterface]
    network_boot: bool
    power: dict[str, Any] = Field(
        description="how the api's machine reaches its power: virsh driver settings"
    )


class HostUsage(BaseModel):
    """What a host holds and what it can still give (overcommit ratios applied)."""

    cores_total: int
    cores_used: int
    cores_available: int
    memory_total: int = Field(description="MiB, after the memory overcommit ratio")
    memory_used: int
    memory_available: int
    storage_total: int = Field(description="bytes, every pool")
    storage_available: int
    vms: int


class KvmHost(Stamped):
    """A KVM host ("pod"): never its secrets, only which ones are set."""

    name: str
    uri: str
    host_ip: str | None
    secrets_set: list[str]
    zone: str | None
    pool: str | None
    tags: list[str]
    cpu_over_commit_ratio: float
    memory_over_commit_ratio: float
    default_storage_pool: str | None
    default_macvlan_mode: MacvlanMode
    origin: HostOrigin
    architecture: str
    cores: int
    cpu_speed: int = Field(description="MHz")
    memory: int = Field(description="MiB")
    correlated: bool
    correlated_with: str | None = Field(
        description="what ipam knows the host as: `machine:<id>` or `device:<id>` at an address"
    )
    storage_pools: list[StoragePool]
    networks: list[LibvirtNetwork]
    interfaces: list[HostInterface]
    usage: HostUsage
    refreshed_at: datetime | None


# -- requests -----------------------------------------------------------------------------


class KvmHostCreate(_Input):
    """A new KVM host; it is discovered at once (a host libvirt cannot reach is refused)."""

    uri: Uri
    name: Name | None = Field(None, description="default: libvirt's host name")
    password: Secret | None = None
    ssh_key: Secret | None = Field(None, description="a private key for qemu+ssh")
    host_ip: str | None = Field(
        None, description="the host's address (default: the URI's host, if it is an address)"
    )
    zone: Name | None = None
    pool: Name | None = None
    tags: Tags = Field(default_factory=list)
    cpu_over_commit_ratio: Ratio = 1.0
    memory_over_commit_ratio: Ratio = 1.0
    default_storage_pool: Name | None = None
    default_macvlan_mode: MacvlanMode = MacvlanMode.BRIDGE
    origin: HostOrigin = HostOrigin.MANUAL


class KvmHostUpdate(_Input):
    """Changes to a KVM host (only the fields given change; a new ``uri`` is rediscovered;
    a secret set to null is forgotten)."""

    uri: Uri | None = None
    name: Name | None = None
    password: Secret | None = None
    ssh_key: Secret | None = None
    host_ip: str | None = None
    zone: Name | None = None
    pool: Name | None = None
    tags: Tags | None = None
    cpu_over_commit_ratio: Ratio | None = None
    memory_over_commit_ratio: Ratio | None = None
    default_storage_pool: Name | None = None
    default_macvlan_mode: MacvlanMode | None = None
    origin: HostOrigin | None = None


class KvmHostDelete(ById):
    """Forget a host; with ``decompose`` its composed VMs are decomposed first."""

    decompose: bool = False


class ComposeSpec(_Input):
    """What to compose: ``count`` VMs alike.

    ``storage``: ``label:size(tag,...)`` entries separated by commas, sizes in GB; a tag
    names a storage pool (by name or type). Default: one 8 GB ``root`` disk.
    ``interfaces``: ``label:key=value,...`` entries separated by semicolons; keys ``space``,
    ``subnet`` (CIDR or id), ``vlan`` (id), ``vid``, ``fabric`` (name or id), ``ip``,
    ``type`` (``bridge`` or ``macvlan``), ``mode`` (a macvlan mode), ``name`` (a host
    interface); each label becomes the VM interface's name.
    """

    cores: Annotated[int, Field(ge=1, le=1024)] = 1
    memory: Annotated[int, Field(ge=64, le=16 * 1024 * 1024, description="MiB")] = 2048
    architecture: Annotated[str, Field(max_length=40)] | None = None
    hostname: Hostname | None = None
    zone: Name | None = None
    pool: Name | None = None
    storage: Annotated[str, Field(max_length=1024, examples=["root:20(ssd),data:100"])] | None = (
        None
    )
    interfaces: (
        Annotated[
            str,
            Field(max_length=2048, examples=["eth0:space=dmz,ip=10.0.0.5;eth1:subnet=10.1.0.0/24"]),
        ]
        | None
    ) = None
    count: Annotated[int, Field(ge=1, le=100)] = 1
    start: bool = Field(False, description="power the VMs on once composed")


class ComposeRequest(ComposeSpec):
    """Compose ``count`` VMs on one host."""

    host_id: ObjectId


class ComposeResult(BaseModel):
    """The VMs composed, and what the operator should know about them."""

    vms: list[Vm]
    warnings: list[str]


class KvmHostQuery(PageRequest):
    """KVM hosts, optionally of one zone or resource pool."""

    zone: Name | None = None
    pool: Name | None = None


class VmQuery(PageRequest):
    """VMs, optionally of one host."""

    host_id: ObjectId | None = None


class DecomposeRequest(ById):
    """Decompose a VM: destroy, undefine with its storage, release its addresses."""


class VmXml(BaseModel):
    """A VM's domain XML as libvirt holds it."""

    id: int
    xml: str


# -- commands -----------------------------------------------------------------------------

# Discovery and composition wait on libvirt (an SSH round trip, volume creation).
LIBVIRT_TIMEOUT = 120.0

HOST_CREATE = Command(
    SERVICE, "host_create", KvmHostCreate, KvmHost, LIBVIRT_TIMEOUT, "Add and discover a KVM host"
)
HOST_GET = Command(SERVICE, "host_get", ById, KvmHost, 10.0, "One KVM host")
HOST_LIST = Command(SERVICE, "host_list", KvmHostQuery, Page[KvmHost], 10.0, "KVM hosts, by id")
HOST_UPDATE = Command(
    SERVICE,
    "host_update",
    UpdateRequest[KvmHostUpdate],
    KvmHost,
    LIBVIRT_TIMEOUT,
    "Change a KVM host's settings",
)
HOST_REFRESH = Command(
    SERVICE, "host_refresh", ById, KvmHost, LIBVIRT_TIMEOUT, "Discover a KVM host again"
)
HOST_DELETE = Command(
    SERVICE,
    "host_delete",
    KvmHostDelete,
    KvmHost,
    LIBVIRT_TIMEOUT * 5,
    "Forget a KVM host (decomposing its VMs if asked)",
)
VM_COMPOSE = Command(
    SERVICE, "vm_compose", ComposeRequest, ComposeResult, LIBVIRT_TIMEOUT * 5, "Compose VMs"
)
VM_DECOMPOSE = Command(
    SERVICE, "vm_decompose", DecomposeRequest, Vm, LIBVIRT_TIMEOUT, "Decompose a VM"
)
VM_GET = Command(SERVICE, "vm_get", ById, Vm, 10.0, "One VM")
VM_LIST = Command(SERVICE, "vm_list", VmQuery, Page[Vm], 10.0, "VMs, by id")
VM_XML = Command(SERVICE, "vm_xml", ById, VmXml, LIBVIRT_TIMEOUT, "A VM's domain XML from libvirt")


# -- events -------------------------------------------------------------------------------


@event(SERVICE, "host", "added")
class HostAdded(EventPayload):
    """A KVM host was added and discovered."""

    host: KvmHost


@event(SERVICE, "host", "refreshed")
class HostRefreshed(EventPayload):
    """A KVM host was discovered again; VMs that appeared or vanished are named by UUID,
    with their MACs (the api matches VMs to machines by MAC)."""

    host: KvmHost
    new_vms: list[Vm]
    vanished_vms: list[Vm]


@event(SERVICE, "host", "updated")
class HostUpdated(EventPayload):
    """A KVM host's settings changed."""

    host: KvmHost


@event(SERVICE, "host", "deleted")
class HostDeleted(EventPayload):
    """A KVM host was forgotten; ``decomposed`` lists the VMs decomposed with it."""

    host: KvmHost
    decomposed: list[int]


@event(SERVICE, "vm", "composed")
class VmComposed(EventPayload):
    """A VM was composed: the api makes it a machine (status New, power driver virsh with
    ``vm.power``) and records its addresses. ``warnings`` are the operator's to read (PXE
    that cannot work on a libvirt network with its own DHCP)."""

    vm: Vm
    warnings: list[str]


@event(SERVICE, "vm", "failed")
class VmComposeFailed(EventPayload):
    """Composing a VM failed midway; what was made (volumes, domain, addresses) is undone."""

    host_id: int
    name: str
    stage: str
    code: str
    message: str
    rolled_back: list[str]


@event(SERVICE, "vm", "decomposed")
class VmDecomposed(EventPayload):
    """A VM was destroyed and undefined with its storage; its addresses were released."""

    vm: Vm
    released: list[str]
