"""Making a discovery known: a new device, or a new interface of a machine or device.

The discovery service decides what is known from ipam: an address ipam has assigned is a
known IP, and a MAC on such an address is a known MAC. So the discovery's address is
recorded in ipam with its MAC (sticky, or user-reserved for ``external``) and the owner's
hostname. A ``dynamic`` device records nothing (DHCP gives its address): its discovery
stays unknown to the discovery service until ipam has an assigned address with that MAC.
"""

from __future__ import annotations

from metalbus.shared.bus import Bus
from metalbus.shared.contract import discovery as d
from metalbus.shared.contract.devices import IpAssignment, KnownAs, MadeKnown, MakeKnownRequest
from metalbus.shared.contract.ipam import AddressType
from metalbus.shared.db import Database
from metalbus.shared.errors import NotFound, ValidationFailed

from . import inventory
from .addresses import NewInterface
from .shapes import Addressing

_DEVICE_ONLY = (
    "hostname",
    "domain",
    "description",
    "ip_assignment",
    "alloc_type",
    "parent",
    "zone",
)
_INTERFACE_ONLY = ("machine", "device", "name")


def _check(body: MakeKnownRequest) -> None:
    """Each kind takes its own fields; refuse the other's rather than ignore them."""
    given = body.model_fields_set
    other = _INTERFACE_ONLY if body.as_ is KnownAs.DEVICE else _DEVICE_ONLY
    for name in other:
        if name in given and getattr(body, name) is not None:
            raise ValidationFailed(
                f"{name} is not taken when making a discovery known as {body.as_.value}",
                field=f"body.{name}",
            )
    if body.as_ is KnownAs.INTERFACE and (body.machine is None) == (body.device is None):
        raise ValidationFailed("give exactly one of machine and device", field="body.machine")
    if body.alloc_type is not None and body.ip_assignment is not None:
        raise ValidationFailed(
            "give ip_assignment or alloc_type, not both", field="body.alloc_type"
        )


def _assignment(body: MakeKnownRequest) -> IpAssignment:
    if body.alloc_type is AddressType.USER_RESERVED:
        return IpAssignment.EXTERNAL
    return body.ip_assignment or IpAssignment.STATIC


async def _check_discovered(bus: Bus, ip_text: str, mac: str) -> None:
    page = await bus.request(d.DISCOVERY_LIST, d.DiscoveryQuery(ip=ip_text, mac=mac, limit=1))
    if not page.items:
        raise NotFound(f"no discovery of {ip_text} at {mac}", field="body.ip")


async def make_known(db: Database, bus: Bus, body: MakeKnownRequest) -> MadeKnown:
    """Create what ``body`` asks for; ipam records the address (see the module's doc)."""
    _check(body)
    await _check_discovered(bus, body.ip, body.mac)
    if body.as_ is KnownAs.DEVICE:
        assignment = _assignment(body)
        dynamic = assignment is IpAssignment.DYNAMIC
        addressing = Addressing(ip_assignment=assignment, ip=None if dynamic else body.ip)
        new = inventory.NewDevice(
            hostname=body.hostname,
            domain=body.domain or "maas",
            description=body.description or "",
            parent=body.parent,
            zone=body.zone,
            tags=(),
            macs_field="body.mac",
        )
        interface = NewInterface(None, body.mac, addressing, "body")
        system_id, [row] = await inventory.create(db, bus, new, [interface], cause="discovered")
        return MadeKnown(
            as_=KnownAs.DEVICE,
            system_id=system_id,
            interface=row.name,
            mac=body.mac,
            ip_assignment=assignment,
            ip=row.ip,
            address_id=row.ip_id,
        )
    static = Addressing(ip_assignment=IpAssignment.STATIC, ip=body.ip)
    interface = NewInterface(body.name, body.mac, static, "body")
    ip_text: str | None
    address_id: int | None
    if body.machine is not None:
        name, address = await inventory.add_machine_interface(
            db, bus, body.machine, interface, "body.machine"
        )
        system_id, ip_text, address_id = body.machine, address.ip, address.id
    else:
        assert body.device is not None
        row = await inventory.add_interface(db, bus, body.device, interface, "body.device")
        system_id, name, ip_text, address_id = body.device, row.name, row.ip, row.ip_id
    return MadeKnown(
        as_=KnownAs.INTERFACE,
        system_id=system_id,
        interface=name,
        mac=body.mac,
        ip_assignment=IpAssignment.STATIC,
        ip=ip_text,
        address_id=address_id,
    )
