"""Reading and writing devices; every change stages its event.

Each function works inside the caller's transaction, so a change and its event commit
together. ipam is the routes' business (:mod:`.addresses`): they allocate before writing
and release when the write fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract import devices as d
from metalbus.shared.errors import Conflict, NotFound, ValidationFailed
from metalbus.shared.events import as_utc, utcnow

from ..machines import store as machines
from ..machines.models import Machine, Zone
from .models import Device, DeviceInterface
from .shapes import DeviceInterfacePublic, DevicePublic


async def get_device(
    session: AsyncSession, system_id: str, *, field: str = "path.system_id", lock: bool = False
) -> Device:
    """The device ``system_id``. Raises NotFound naming ``field``."""
    query = select(Device).where(Device.system_id == system_id)
    if lock:
        query = query.with_for_update()
    row = (await session.exec(query)).first()
    if row is None:
        raise NotFound(f"no device {system_id}", field=field)
    return row


async def interfaces_of(session: AsyncSession, device: Device) -> list[DeviceInterface]:
    query = (
        select(DeviceInterface)
        .where(DeviceInterface.device_id == device.id)
        .order_by(col(DeviceInterface.id))
    )
    return list((await session.exec(query)).all())


async def check_hostname_free(session: AsyncSession, hostname: str, field: str) -> None:
    """A device's hostname is unique among devices and machines (one DNS name each)."""
    if (await session.exec(select(Device).where(Device.hostname == hostname))).first():
        raise Conflict(f"a device is already called {hostname}", field=field)
    if (await session.exec(select(Machine).where(Machine.hostname == hostname))).first():
        raise Conflict(f"a machine is already called {hostname}", field=field)


async def check_parent(
    session: AsyncSession, parent: str, field: str, device: Device | None = None
) -> None:
    """``parent`` is a machine or a device, and (for ``device``) not ``device`` itself nor
    one of its descendants. Raises ValidationFailed naming ``field``."""
    if (await session.exec(select(Machine).where(Machine.system_id == parent))).first():
        return
    seen: set[str] = set()
    current: str | None = parent
    while current is not None:
        if device is not None and current == device.system_id:
            raise ValidationFailed(
                f"{parent} cannot be the parent of {device.system_id}: that makes a loop",
                field=field,
            )
        if current in seen:  # a loop already stored: stop rather than spin
            break
        seen.add(current)
        row = (await session.exec(select(Device).where(Device.system_id == current))).first()
        if row is None:
            if current == parent:
                raise ValidationFailed(f"no machine or device {parent}", field=field)
            break  # an ancestor's machine parent (or a dangling one): the chain ends there
        current = row.parent


def free_name(taken: Sequence[str]) -> str:
    """The first of eth0, eth1... not in ``taken`` (a new interface's default name)."""
    return next(f"eth{n}" for n in range(len(taken) + 1) if f"eth{n}" not in taken)


async def _zone_name(session: AsyncSession, device: Device) -> str:
    zone = await session.get(Zone, device.zone_id)
    assert zone is not None
    return zone.name


async def info(session: AsyncSession, device: Device) -> d.DeviceInfo:
    """The device as its events carry it."""
    return d.DeviceInfo(
        system_id=device.system_id,
        hostname=device.hostname,
        domain=device.domain,
        description=device.description,
        parent=device.parent,
        zone=await _zone_name(session, device),
        tags=json.loads(device.tags),
        addresses=[
            d.DeviceAddress(mac=i.mac, ip_assignment=i.ip_assignment, ip=i.ip)
            for i in await interfaces_of(session, device)
        ],
    )


async def public(session: AsyncSession, device: Device) -> DevicePublic:
    """The device as the API shows it."""
    return DevicePublic(
        system_id=device.system_id,
        hostname=device.hostname,
        domain=device.domain,
        fqdn=f"{device.hostname}.{device.domain}",
        description=device.description,
        parent=device.parent,
        zone=await _zone_name(session, device),
        tags=json.loads(device.tags),
        interfaces=[
            DeviceInterfacePublic(
                id=i.id or 0,
                name=i.name,
                mac=i.mac,
                ip_assignment=i.ip_assignment,
                subnet_id=i.subnet_id,
                ip=i.ip,
            )
            for i in await interfaces_of(session, device)
        ],
        created_at=as_utc(device.created_at),
        updated_at=as_utc(device.updated_at),
    )


async def add_device(session: AsyncSession, device: Device) -> int:
    """Store a new device (without interfaces yet); returns its id."""
    session.add(device)
    await session.flush()
    assert device.id is not None
    return device.id


async def created(session: AsyncSession, device: Device, cause: str) -> None:
    """Stage ``device.created`` once the device and its interfaces are stored."""
    await session.flush()
    machines.stage(
        session, d.DeviceCreated(device=await info(session, device), cause=cause), device.system_id
    )


async def changed(session: AsyncSession, device: Device) -> None:
    """Record that ``device`` changed (stages ``device.updated``)."""
    device.updated_at = utcnow()
    session.add(device)
    await session.flush()
    machines.stage(session, d.DeviceUpdated(device=await info(session, device)), device.system_id)


async def delete_device(session: AsyncSession, device: Device) -> None:
    """Remove the device and its interfaces; its child devices lose their parent.

    Stages ``device.deleted``, and ``device.updated`` for each child.
    """
    last = await info(session, device)
    children = (await session.exec(select(Device).where(Device.parent == device.system_id))).all()
    for child in children:
        child.parent = None
        await changed(session, child)
    await session.exec(delete(DeviceInterface).where(col(DeviceInterface.device_id) == device.id))
    await session.exec(delete(Device).where(col(Device.id) == device.id))
    session.expunge(device)
    machines.stage(session, d.DeviceDeleted(device=last), device.system_id)
