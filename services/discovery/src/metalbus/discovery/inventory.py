"""The MACs of the api's machines and devices, kept from the api's events.

A discovery's MAC is known when ipam has an assigned address with it, or when it is on an
interface of a machine or device: a device made known with a dynamic (DHCP) address
records nothing in ipam. Each created/updated event replaces its owner's MACs; deleted
removes them. Applied once per event, in stream order, by the durable consumer
``discovery-inventory``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract.devices import DeviceCreated, DeviceDeleted, DeviceUpdated
from metalbus.shared.contract.machines import MachineCreated, MachineDeleted, MachineUpdated
from metalbus.shared.errors import ValidationFailed
from metalbus.shared.events import EVENT_TYPES, RawEvent

from .models import InventoryMacRow

TABLE = InventoryMacRow.__table__  # type: ignore[attr-defined]
_MACHINE_EVENTS = (MachineCreated, MachineUpdated, MachineDeleted)
_DEVICE_EVENTS = (DeviceCreated, DeviceUpdated, DeviceDeleted)


def inventory_consumer():  # type: ignore[no-untyped-def]
    """``apply`` for the durable consumer on the api's events."""

    async def apply(session: AsyncSession, event: RawEvent) -> None:
        model = EVENT_TYPES.get(event.type)
        if model not in _MACHINE_EVENTS and model not in _DEVICE_EVENTS:
            return
        try:
            payload = model.model_validate(event.data)  # type: ignore[union-attr]
        except ValidationError as exc:  # not worth redelivering: terminated by the runtime
            raise ValidationFailed(f"event {event.id} is malformed: {exc}") from exc
        if isinstance(payload, _MACHINE_EVENTS):
            owner, macs = f"machine:{payload.machine.system_id}", payload.machine.macs
        else:
            device = payload.device
            owner, macs = f"device:{device.system_id}", [a.mac for a in device.addresses]
        deleted = isinstance(payload, MachineDeleted | DeviceDeleted)
        await _replace(session, owner, [] if deleted else macs)

    return apply


async def _replace(session: AsyncSession, owner: str, macs: Iterable[str]) -> None:
    await session.execute(delete(TABLE).where(TABLE.c.owner == owner))
    rows = [{"owner": owner, "mac": mac.lower()} for mac in sorted(set(macs))]
    if rows:
        await session.execute(insert(TABLE), rows)


async def known_macs(conn: AsyncConnection, macs: Iterable[str]) -> set[str]:
    """Which of ``macs`` are on a machine's or device's interface."""
    wanted = {mac.lower() for mac in macs}
    if not wanted:
        return set()
    found = await conn.execute(select(TABLE.c.mac).where(TABLE.c.mac.in_(wanted)).distinct())
    return {row.mac for row in found}
