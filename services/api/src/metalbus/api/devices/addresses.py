"""ipam addresses of device interfaces: allocated before the api writes, released after.

An address is allocated with the interface's MAC and the owner's hostname, so ipam (and
the discovery service, which learns from ipam which MACs are known) sees whose it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from metalbus.shared.bus import Bus
from metalbus.shared.contract import ipam as ip
from metalbus.shared.contract.devices import IpAssignment
from metalbus.shared.errors import NotFound, ValidationFailed

from ..routes.forwarding import Where, forward
from .shapes import Addressing

_ALLOC_TYPES = {
    IpAssignment.STATIC: ip.AddressType.STICKY,
    IpAssignment.EXTERNAL: ip.AddressType.USER_RESERVED,
}


def check(spec: Addressing, where: str) -> None:
    """What each assignment needs (``where``: ``body`` or ``body.interfaces.0``)."""
    if spec.ip_assignment is IpAssignment.DYNAMIC and spec.ip is not None:
        raise ValidationFailed(
            "a dynamic interface takes no ip: DHCP gives it", field=f"{where}.ip"
        )
    if spec.ip_assignment is IpAssignment.EXTERNAL and spec.ip is None:
        raise ValidationFailed("an external interface needs its ip", field=f"{where}.ip")
    if spec.ip_assignment is IpAssignment.STATIC and spec.ip is None and spec.subnet_id is None:
        raise ValidationFailed(
            "a static interface needs an ip or a subnet_id to take the next free one",
            field=f"{where}.ip",
        )


@dataclass(frozen=True)
class NewInterface:
    """An interface to add: its addressing, and where the client put it (for faults)."""

    name: str | None
    mac: str
    addressing: Addressing
    where: str


async def allocate(
    bus: Bus, interface: NewInterface, owner_type: ip.OwnerType, owner_id: str, hostname: str
) -> ip.IpAddress | None:
    """The address ``interface`` asks for, assigned in ipam (None for a dynamic one)."""
    spec = interface.addressing
    alloc_type = _ALLOC_TYPES.get(spec.ip_assignment)
    if alloc_type is None:
        return None
    request = ip.AllocateAddress(
        ip=spec.ip,
        subnet_id=None if spec.ip is not None else spec.subnet_id,
        alloc_type=alloc_type,
        owner_type=owner_type,
        owner_id=owner_id,
        hostname=hostname,
        mac=interface.mac,
    )
    return await forward(bus, ip.ADDRESS_ALLOCATE, request, Where(interface.where))


async def release(bus: Bus, ids: Iterable[int | None]) -> None:
    """Give addresses back to ipam (one already gone is fine)."""
    for address_id in ids:
        if address_id is None:
            continue
        try:
            await bus.request(ip.ADDRESS_RELEASE, ip.ReleaseAddress(id=address_id))
        except NotFound:
            pass
