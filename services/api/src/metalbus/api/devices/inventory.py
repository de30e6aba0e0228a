"""Adding devices and interfaces: ipam first, then one transaction, undone in ipam on failure.

The checks that can fail on input (zone, parent, hostname, MACs) run before anything is
allocated, so a bad request leaves ipam alone; a write that still fails (a concurrent
request took the hostname or the MAC) releases what was allocated for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.bus import Bus
from metalbus.shared.contract import ipam as ip
from metalbus.shared.db import Database
from metalbus.shared.errors import NotFound
from metalbus.shared.events import utcnow

from ..machines import store as machines
from ..machines.models import LinkMode, Machine, MachineInterface, MachineLink, Zone
from . import addresses, store
from .addresses import NewInterface
from .models import Device, DeviceInterface


@dataclass(frozen=True)
class NewDevice:
    hostname: str | None
    domain: str
    description: str
    parent: str | None
    zone: str | None
    tags: Sequence[str]
    where: str = "body"
    """Where the device's own fields are (``body``)."""
    macs_field: str = "body.interfaces"


async def create(
    db: Database, bus: Bus, new: NewDevice, interfaces: Sequence[NewInterface], cause: str
) -> tuple[str, list[DeviceInterface]]:
    """Add a device with its interfaces; returns its system id and the interfaces."""
    for interface in interfaces:
        addresses.check(interface.addressing, interface.where)
    system_id = machines.new_system_id()
    hostname = new.hostname or f"device-{system_id}"
    async with db.read() as session:
        zone = await machines.named_by_name(session, Zone, new.zone, f"{new.where}.zone")
        if new.parent is not None:
            await store.check_parent(session, new.parent, f"{new.where}.parent")
        await store.check_hostname_free(session, hostname, f"{new.where}.hostname")
        await machines.check_macs_free(session, [i.mac for i in interfaces], new.macs_field)
    allocated: list[tuple[NewInterface, str, ip.IpAddress | None]] = []
    try:
        for interface in interfaces:
            address = await addresses.allocate(
                bus, interface, ip.OwnerType.DEVICE, system_id, hostname
            )
            taken = [name for _, name, _ in allocated] + [i.name for i in interfaces if i.name]
            allocated.append((interface, interface.name or store.free_name(taken), address))
        async with db.transaction() as session:
            now = utcnow()
            device = Device(
                system_id=system_id,
                hostname=hostname,
                domain=new.domain,
                description=new.description,
                parent=new.parent,
                zone_id=zone.id,
                tags=json.dumps(sorted(set(new.tags))),
                created_at=now,
                updated_at=now,
            )
            device_id = await store.add_device(session, device)
            rows = [_row(device_id, *each) for each in allocated]
            session.add_all(rows)
            await store.created(session, device, cause)
    except BaseException:
        await addresses.release(bus, (a.id for _, _, a in allocated if a is not None))
        raise
    return system_id, rows


def _row(
    device_id: int, interface: NewInterface, name: str, address: ip.IpAddress | None
) -> DeviceInterface:
    return DeviceInterface(
        device_id=device_id,
        name=name,
        mac=interface.mac,
        ip_assignment=interface.addressing.ip_assignment,
        subnet_id=address.subnet_id if address else interface.addressing.subnet_id,
        ip=address.ip if address else None,
        ip_id=address.id if address else None,
    )


async def add_interface(
    db: Database, bus: Bus, system_id: str, interface: NewInterface, device_field: str
) -> DeviceInterface:
    """Add an interface to device ``system_id`` (NotFound naming ``device_field``)."""
    addresses.check(interface.addressing, interface.where)
    async with db.read() as session:
        device = await store.get_device(session, system_id, field=device_field)
        await machines.check_macs_free(session, [interface.mac], f"{interface.where}.mac")
    address = await addresses.allocate(
        bus, interface, ip.OwnerType.DEVICE, system_id, device.hostname
    )
    try:
        async with db.transaction() as session:
            device = await store.get_device(session, system_id, field=device_field, lock=True)
            await machines.check_macs_free(session, [interface.mac], f"{interface.where}.mac")
            name = interface.name or store.free_name(
                [i.name for i in await store.interfaces_of(session, device)]
            )
            assert device.id is not None
            row = _row(device.id, interface, name, address)
            session.add(row)
            await store.changed(session, device)
    except BaseException:
        await addresses.release(bus, [address.id if address else None])
        raise
    return row


async def add_machine_interface(
    db: Database, bus: Bus, system_id: str, interface: NewInterface, machine_field: str
) -> tuple[str, ip.IpAddress]:
    """Add an interface with a static address to machine ``system_id``; returns its name.

    The address is assigned now (sticky, owned by the machine, as a deploy would assign a
    static link's): the link keeps its id, so a deploy leaves it and deleting the machine
    or the link releases it.
    """
    async with db.read() as session:
        machine = await _machine(session, system_id, machine_field)
        await machines.check_macs_free(session, [interface.mac], f"{interface.where}.mac")
    address = await addresses.allocate(
        bus, interface, ip.OwnerType.MACHINE, system_id, machine.hostname
    )
    assert address is not None  # a static addressing always has one
    try:
        async with db.transaction() as session:
            machine = await _machine(session, system_id, machine_field, lock=True)
            await machines.check_macs_free(session, [interface.mac], f"{interface.where}.mac")
            taken = [i.name for i in await machines.interfaces_of(session, machine)]
            name = interface.name or store.free_name(taken)
            assert machine.id is not None
            row = MachineInterface(machine_id=machine.id, name=name, mac=interface.mac)
            session.add(row)
            await session.flush()
            assert row.id is not None
            session.add(
                MachineLink(
                    interface_id=row.id,
                    mode=LinkMode.STATIC,
                    subnet_id=address.subnet_id,
                    requested_ip=address.ip,
                    ip=address.ip,
                    ip_id=address.id,
                )
            )
            await machines.changed(session, machine)
    except BaseException:
        await addresses.release(bus, [address.id])
        raise
    return name, address


async def _machine(
    session: AsyncSession, system_id: str, field: str, *, lock: bool = False
) -> Machine:
    try:
        return await machines.get_machine(session, system_id, lock=lock)
    except NotFound as exc:
        raise NotFound(exc.message, field=field) from exc
