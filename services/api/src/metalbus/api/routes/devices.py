"""``/api/v1/devices``: non-deployable things on the network (printers, switches, phones).

Reads need ``readonly``, changes ``operator``. A device's interfaces get their addresses
from ipam (``static``: sticky, ``external``: user-reserved, ``dynamic``: none recorded);
deleting an interface or the device releases them. See ``docs/devices.md``.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Response, status
from sqlmodel import col, select

from metalbus.shared.errors import NotFound

from ..deps import BusDep, DatabaseDep, Operator, Reader, ReadSession
from ..devices import addresses, inventory, store
from ..devices.addresses import NewInterface
from ..devices.models import Device, DeviceInterface
from ..devices.shapes import DeviceCreate, DeviceInterfaceCreate, DevicePublic, DeviceUpdate
from ..machines import store as machines
from ..machines.models import Zone
from . import API_PREFIX, problem_responses
from .forwarding import IdPath

router = APIRouter(
    prefix=API_PREFIX, tags=["devices"], responses=problem_responses(401, 403, 404, 409, 422)
)


async def _answer(db: DatabaseDep, system_id: str) -> DevicePublic:
    async with db.read() as session:
        return await store.public(session, await store.get_device(session, system_id))


@router.get("/devices", response_model=list[DevicePublic], summary="Devices, by id")
async def list_devices(
    _: Reader, session: ReadSession, hostname: str | None = None, parent: str | None = None
) -> list[DevicePublic]:
    query = select(Device).order_by(col(Device.id))
    if hostname is not None:
        query = query.where(Device.hostname == hostname)
    if parent is not None:
        query = query.where(Device.parent == parent)
    return [await store.public(session, d) for d in (await session.exec(query)).all()]


@router.post(
    "/devices",
    status_code=status.HTTP_201_CREATED,
    response_model=DevicePublic,
    summary="Add a device with its interfaces (addresses static, dynamic or external)",
)
async def create_device(
    body: DeviceCreate, _: Operator, db: DatabaseDep, bus: BusDep
) -> DevicePublic:
    system_id, _rows = await inventory.create(
        db,
        bus,
        inventory.NewDevice(
            hostname=body.hostname,
            domain=body.domain,
            description=body.description,
            parent=body.parent,
            zone=body.zone,
            tags=body.tags,
        ),
        [
            NewInterface(i.name, i.mac, i, f"body.interfaces.{n}")
            for n, i in enumerate(body.interfaces)
        ],
        cause="added",
    )
    return await _answer(db, system_id)


@router.get("/devices/{system_id}", response_model=DevicePublic, summary="One device")
async def get_device(system_id: str, _: Reader, session: ReadSession) -> DevicePublic:
    return await store.public(session, await store.get_device(session, system_id))


@router.patch("/devices/{system_id}", response_model=DevicePublic, summary="Change a device")
async def update_device(
    system_id: str, body: DeviceUpdate, _: Operator, db: DatabaseDep
) -> DevicePublic:
    given = body.model_fields_set
    async with db.transaction() as session:
        device = await store.get_device(session, system_id, lock=True)
        if body.hostname is not None and body.hostname != device.hostname:
            await store.check_hostname_free(session, body.hostname, "body.hostname")
            device.hostname = body.hostname
        if body.domain is not None:
            device.domain = body.domain
        if body.description is not None:
            device.description = body.description
        if "parent" in given:
            if body.parent is not None:
                await store.check_parent(session, body.parent, "body.parent", device)
            device.parent = body.parent
        if body.zone is not None:
            zone = await machines.named_by_name(session, Zone, body.zone, "body.zone")
            device.zone_id = zone.id
        if body.tags is not None:
            device.tags = json.dumps(sorted(set(body.tags)))
        await store.changed(session, device)
    return await _answer(db, system_id)


@router.delete(
    "/devices/{system_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a device (its addresses are released; its child devices lose their parent)",
)
async def delete_device(system_id: str, _: Operator, db: DatabaseDep, bus: BusDep) -> Response:
    async with db.transaction() as session:
        device = await store.get_device(session, system_id, lock=True)
        held = [i.ip_id for i in await store.interfaces_of(session, device)]
        await store.delete_device(session, device)
    # After the commit: a failed delete keeps its addresses. A release that fails here
    # leaves an address ipam still shows owned by the deleted device (retry by hand).
    await addresses.release(bus, held)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/devices/{system_id}/interfaces",
    status_code=status.HTTP_201_CREATED,
    response_model=DevicePublic,
    summary="Add an interface (its address static, dynamic or external)",
)
async def add_interface(
    system_id: str, body: DeviceInterfaceCreate, _: Operator, db: DatabaseDep, bus: BusDep
) -> DevicePublic:
    interface = NewInterface(body.name, body.mac, body, "body")
    await inventory.add_interface(db, bus, system_id, interface, "path.system_id")
    return await _answer(db, system_id)


@router.delete(
    "/devices/{system_id}/interfaces/{interface_id}",
    response_model=DevicePublic,
    summary="Remove an interface (its address is released)",
)
async def remove_interface(
    system_id: str, interface_id: IdPath, _: Operator, db: DatabaseDep, bus: BusDep
) -> DevicePublic:
    async with db.transaction() as session:
        device = await store.get_device(session, system_id, lock=True)
        row = await session.get(DeviceInterface, interface_id)
        if row is None or row.device_id != device.id:
            raise NotFound(
                f"device {system_id} has no interface {interface_id}", field="path.interface_id"
            )
        held = row.ip_id
        await session.delete(row)
        await store.changed(session, device)
    await addresses.release(bus, [held])
    return await _answer(db, system_id)
