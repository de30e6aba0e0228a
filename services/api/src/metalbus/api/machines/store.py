"""Reading and writing machines, zones and pools; every change stages its event.

Each function works inside the caller's transaction (a route's ``db.transaction()``, a
consumer's inbox transaction or a flow step's), so a change and its event commit together.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared import outbox, telemetry
from metalbus.shared.contract import machines as m
from metalbus.shared.errors import Conflict, NotFound, ValidationFailed
from metalbus.shared.events import EventPayload, as_utc, new_event, utcnow

from ..devices.models import DeviceInterface
from .models import Machine, MachineInterface, MachineLink, ResourcePool, StatusRecord, Zone
from .shapes import (
    InterfacePublic,
    LinkPublic,
    MachinePublic,
    NamedPublic,
    PowerPublic,
    StatusPublic,
)
from .states import Action, next_status

DEFAULT = "default"
CONTINUATIONS = frozenset({Action.COMMISSIONED, Action.DEPLOYED, Action.TESTED})
"""Moves that carry on the flow an operator started (its trace goes on)."""
_ALPHABET = string.ascii_lowercase + string.digits


def new_system_id() -> str:
    """A short random id, as MAAS gives machines (``4y3h7n``)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(6))


def bmc_name(hostname: str, system_id: str) -> str:
    """The name of a machine's BMC in the power service (a name there is 63 characters)."""
    return f"{hostname[:55]}-{system_id}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def stage(session: AsyncSession, payload: EventPayload, subject: str) -> None:
    outbox.stage(session, new_event(payload, subject=subject))


# -- zones and pools ----------------------------------------------------------------------

Named = type[Zone] | type[ResourcePool]


async def named_by_name(session: AsyncSession, table: Named, name: str | None, field: str) -> Any:
    """The zone or pool called ``name`` (the default one when None). Raises ValidationFailed."""
    row = (await session.exec(select(table).where(table.name == (name or DEFAULT)))).first()
    if row is None:
        kind = "zone" if table is Zone else "resource pool"
        raise ValidationFailed(f"no {kind} named {name!r}", field=field)
    return row


def named_info(row: Zone | ResourcePool) -> m.NamedObject:
    assert row.id is not None
    return m.NamedObject(id=row.id, name=row.name, description=row.description)


def named_public(row: Zone | ResourcePool) -> NamedPublic:
    assert row.id is not None
    return NamedPublic(
        id=row.id,
        name=row.name,
        description=row.description,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


# -- machines -----------------------------------------------------------------------------


async def get_machine(session: AsyncSession, system_id: str, *, lock: bool = False) -> Machine:
    """The machine ``system_id``. Raises NotFound (naming ``path.system_id``)."""
    query = select(Machine).where(Machine.system_id == system_id)
    if lock:
        query = query.with_for_update()
    row = (await session.exec(query)).first()
    if row is None:
        raise NotFound(f"no machine {system_id}", field="path.system_id")
    return row


async def interfaces_of(session: AsyncSession, machine: Machine) -> list[MachineInterface]:
    query = (
        select(MachineInterface)
        .where(MachineInterface.machine_id == machine.id)
        .order_by(col(MachineInterface.id))
    )
    return list((await session.exec(query)).all())


async def links_of(
    session: AsyncSession, interfaces: Sequence[MachineInterface]
) -> list[MachineLink]:
    ids = [i.id for i in interfaces]
    if not ids:
        return []
    query = (
        select(MachineLink)
        .where(col(MachineLink.interface_id).in_(ids))
        .order_by(col(MachineLink.id))
    )
    return list((await session.exec(query)).all())


async def machine_by_mac(session: AsyncSession, mac: str, *, lock: bool = False) -> Machine | None:
    query = select(Machine).join(
        MachineInterface, col(MachineInterface.machine_id) == col(Machine.id)
    )
    if lock:
        query = query.with_for_update(of=Machine)
    return (await session.exec(query.where(MachineInterface.mac == mac))).first()


async def _names(session: AsyncSession, machine: Machine) -> tuple[str, str]:
    zone = await session.get(Zone, machine.zone_id)
    pool = await session.get(ResourcePool, machine.pool_id)
    assert zone is not None and pool is not None
    return zone.name, pool.name


async def info(session: AsyncSession, machine: Machine) -> m.MachineInfo:
    """The machine as its events carry it."""
    zone, pool = await _names(session, machine)
    return m.MachineInfo(
        system_id=machine.system_id,
        hostname=machine.hostname,
        domain=machine.domain,
        status=m.MachineStatus(machine.status),
        architecture=machine.architecture,
        cores=machine.cores,
        memory=machine.memory,
        storage=machine.storage,
        zone=zone,
        pool=pool,
        tags=json.loads(machine.tags),
        owner=machine.owner,
        macs=[i.mac for i in await interfaces_of(session, machine)],
        power_driver=machine.power_driver,
        pod_id=machine.pod_id,
        vm_id=machine.vm_id,
    )


async def public(session: AsyncSession, machine: Machine) -> MachinePublic:
    """The machine as the API shows it."""
    zone, pool = await _names(session, machine)
    interfaces = await interfaces_of(session, machine)
    links = await links_of(session, interfaces)
    return MachinePublic(
        system_id=machine.system_id,
        hostname=machine.hostname,
        domain=machine.domain,
        fqdn=f"{machine.hostname}.{machine.domain}",
        status=m.MachineStatus(machine.status),
        status_changed_at=as_utc(machine.status_changed_at),
        architecture=machine.architecture,
        cores=machine.cores,
        memory=machine.memory,
        storage=machine.storage,
        disks=json.loads(machine.disks),
        tags=json.loads(machine.tags),
        zone=zone,
        pool=pool,
        owner=machine.owner,
        power=PowerPublic(
            driver=machine.power_driver,
            bmc_id=machine.bmc_id,
            settings=json.loads(machine.power_parameters),
        ),
        interfaces=[
            InterfacePublic(
                id=i.id or 0,
                name=i.name,
                mac=i.mac,
                vlan_id=i.vlan_id,
                links=[
                    LinkPublic(
                        id=link.id or 0,
                        mode=link.mode,
                        subnet_id=link.subnet_id,
                        vlan_id=link.vlan_id,
                        ip=link.ip or link.requested_ip,
                    )
                    for link in links
                    if link.interface_id == i.id
                ],
            )
            for i in interfaces
        ],
        pod_id=machine.pod_id,
        vm_id=machine.vm_id,
        install_kvm=machine.install_kvm,
        flow=machine.flow,
        flow_step=machine.flow_step,
        flow_error=machine.flow_error,
        boot_progress=machine.boot_progress,
        boot_progress_at=as_utc(machine.boot_progress_at) if machine.boot_progress_at else None,
        created_at=as_utc(machine.created_at),
        updated_at=as_utc(machine.updated_at),
    )


async def history(session: AsyncSession, machine: Machine) -> list[StatusPublic]:
    query = (
        select(StatusRecord)
        .where(StatusRecord.machine_id == machine.id)
        .order_by(col(StatusRecord.id))
    )
    return [
        StatusPublic(
            previous=r.previous,
            status=r.status,
            action=r.action,
            message=r.message,
            at=as_utc(r.at),
        )
        for r in (await session.exec(query)).all()
    ]


async def check_hostname_free(session: AsyncSession, hostname: str) -> None:
    if (await session.exec(select(Machine).where(Machine.hostname == hostname))).first():
        raise Conflict(f"a machine is already called {hostname}", field="body.hostname")


async def check_macs_free(session: AsyncSession, macs: Sequence[str], field: str) -> None:
    if len(set(macs)) != len(macs):
        raise ValidationFailed("the same MAC is given twice", field=field)
    taken = (
        await session.exec(select(MachineInterface).where(col(MachineInterface.mac).in_(macs)))
    ).first()
    if taken is not None:
        raise Conflict(f"MAC {taken.mac} is already an interface of a machine", field=field)
    # One MAC is one interface, whether a machine's or a device's.
    device_taken = (
        await session.exec(select(DeviceInterface).where(col(DeviceInterface.mac).in_(macs)))
    ).first()
    if device_taken is not None:
        raise Conflict(f"MAC {device_taken.mac} is already an interface of a device", field=field)


async def create_machine(
    session: AsyncSession,
    *,
    cause: str,
    interfaces: Sequence[tuple[str, str, int | None]],
    hostname: str | None = None,
    system_id: str | None = None,
    status: m.MachineStatus = m.MachineStatus.NEW,
    **attributes: Any,
) -> Machine:
    """A new machine with its interfaces (name, MAC, VLAN id); stages ``machine.created``.

    ``attributes`` are other columns (domain, architecture, zone_id, cores, power...).
    """
    now = utcnow()
    system_id = system_id or new_system_id()
    hostname = hostname or f"machine-{system_id}"
    await check_hostname_free(session, hostname)
    await check_macs_free(session, [mac for _, mac, _ in interfaces], "body.interfaces")
    attributes.setdefault("zone_id", 1)
    attributes.setdefault("pool_id", 1)
    attributes.setdefault("domain", "maas")
    attributes.setdefault("architecture", "amd64/generic")
    machine = Machine(
        system_id=system_id,
        hostname=hostname,
        status=status,
        status_changed_at=now,
        created_at=now,
        updated_at=now,
        **attributes,
    )
    session.add(machine)
    await session.flush()
    for name, mac, vlan_id in interfaces:
        session.add(MachineInterface(machine_id=machine.id, name=name, mac=mac, vlan_id=vlan_id))
    await session.flush()
    stage(session, m.MachineCreated(machine=await info(session, machine), cause=cause), system_id)
    return machine


async def changed(session: AsyncSession, machine: Machine) -> None:
    """Record that ``machine``'s attributes changed (stages ``machine.updated``)."""
    machine.updated_at = utcnow()
    session.add(machine)
    await session.flush()
    stage(session, m.MachineUpdated(machine=await info(session, machine)), machine.system_id)


async def move(
    session: AsyncSession,
    machine: Machine,
    action: Action,
    message: str = "",
    *,
    flow: str | None = None,
    step: str | None = None,
) -> m.MachineStatus:
    """Move ``machine`` by ``action`` (refused with a Conflict when illegal); record it.

    ``flow``/``step`` set the work the flow driver is to do next (None: nothing pending).
    """
    previous = m.MachineStatus(machine.status)
    returns_to = m.MachineStatus(machine.previous_status) if machine.previous_status else None
    status = next_status(previous, action, returns_to=returns_to)
    now = utcnow()
    machine.previous_status = previous
    machine.status = status
    machine.status_changed_at = now
    machine.updated_at = now
    machine.boot_progress = machine.boot_progress_at = None  # a new status boots anew
    machine.flow = flow
    machine.flow_step = step
    machine.flow_attempts = 0
    machine.flow_next_at = None
    if flow is not None:
        machine.flow_error = None
    if flow is not None and action not in CONTINUATIONS:
        # The trace of the request that started the flow: every step continues it, so
        # one flow is one trace (across restarts too), commands and events included.
        # A callback's tidy-up (settle, deployed) stays in the trace of the action.
        machine.flow_trace = json.dumps(telemetry.trace_headers())[:1024]
    session.add(machine)
    session.add(
        StatusRecord(
            machine_id=machine.id,
            previous=previous,
            status=status,
            action=action.value,
            message=message[:1024],
            at=now,
        )
    )
    stage(
        session,
        m.MachineStatusChanged(
            system_id=machine.system_id,
            previous=previous,
            status=status,
            action=action.value,
            message=message[:1024],
        ),
        machine.system_id,
    )
    return status


async def delete_machine(session: AsyncSession, machine: Machine) -> None:
    """Remove the machine, its interfaces, links and history; stages ``machine.deleted``."""
    last = await info(session, machine)
    interfaces = [i.id for i in await interfaces_of(session, machine)]
    # Core statements, children first: the ORM's unit of work may order the deletes
    # against the foreign keys' own cascades otherwise.
    await session.exec(delete(MachineLink).where(col(MachineLink.interface_id).in_(interfaces)))
    await session.exec(
        delete(MachineInterface).where(col(MachineInterface.machine_id) == machine.id)
    )
    await session.exec(delete(StatusRecord).where(col(StatusRecord.machine_id) == machine.id))
    await session.exec(delete(Machine).where(col(Machine.id) == machine.id))
    session.expunge(machine)
    stage(session, m.MachineDeleted(machine=last), machine.system_id)
