"""Rows to contract models and back, look-ups, usage, and writing what discovery found."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract.compose import (
    HostInterface,
    HostUsage,
    KvmHost,
    LibvirtNetwork,
    MacvlanMode,
    StoragePool,
    Vm,
    VmDisk,
    VmInterface,
    VmStatus,
)
from metalbus.shared.errors import NotFound
from metalbus.shared.events import EventPayload, new_event, utcnow
from metalbus.shared.outbox import stage

from .models import HostInterfaceRow, HostRow, NetworkRow, StoragePoolRow, VmRow
from .virt import FoundVm


def emit(session: AsyncSession, payload: EventPayload, subject: str) -> None:
    """Stage an event in the transaction that made the change."""
    stage(session, new_event(payload, subject=subject))


async def get_host(session: AsyncSession, host_id: int, *, field: str = "id") -> HostRow:
    row = await session.get(HostRow, host_id)
    if row is None:
        raise NotFound(f"no KVM host with id {host_id}", field=field)
    return row


async def lock_host(session: AsyncSession, host_id: int, *, field: str = "id") -> HostRow:
    """The host row, locked until the transaction ends (PostgreSQL ``FOR UPDATE``; on
    SQLite every write transaction holds the database's write lock)."""
    row = (
        await session.exec(
            select(HostRow)
            .where(HostRow.id == host_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    if row is None:
        raise NotFound(f"no KVM host with id {host_id}", field=field)
    return row


async def get_vm(session: AsyncSession, vm_id: int, *, field: str = "id") -> VmRow:
    row = await session.get(VmRow, vm_id)
    if row is None:
        raise NotFound(f"no VM with id {vm_id}", field=field)
    return row


@dataclass
class HostBundle:
    """A host with everything discovery recorded for it."""

    row: HostRow
    pools: list[StoragePool]
    networks: list[LibvirtNetwork]
    interfaces: list[HostInterface]
    vms: list[VmRow]


async def bundle(session: AsyncSession, host: HostRow) -> HostBundle:
    pools = (
        await session.exec(
            select(StoragePoolRow)
            .where(StoragePoolRow.host_id == host.id)
            .order_by(col(StoragePoolRow.name))
        )
    ).all()
    networks = (
        await session.exec(
            select(NetworkRow).where(NetworkRow.host_id == host.id).order_by(col(NetworkRow.name))
        )
    ).all()
    interfaces = (
        await session.exec(
            select(HostInterfaceRow)
            .where(HostInterfaceRow.host_id == host.id)
            .order_by(col(HostInterfaceRow.name))
        )
    ).all()
    vms = (
        await session.exec(select(VmRow).where(VmRow.host_id == host.id).order_by(col(VmRow.id)))
    ).all()
    return HostBundle(
        row=host,
        pools=[StoragePool.model_validate(p.model_dump()) for p in pools],
        networks=[
            LibvirtNetwork.model_validate({**n.model_dump(), "addresses": json.loads(n.addresses)})
            for n in networks
        ],
        interfaces=[
            HostInterface.model_validate(
                {**i.model_dump(), "members": json.loads(i.members), "links": json.loads(i.links)}
            )
            for i in interfaces
        ],
        vms=list(vms),
    )


def usage(b: HostBundle) -> HostUsage:
    """Cores and memory under the overcommit ratios; used = what the host's VMs hold."""
    host = b.row
    cores_total = int(host.cores * host.cpu_over_commit_ratio)
    memory_total = int(host.memory * host.memory_over_commit_ratio)
    cores_used = sum(v.cores for v in b.vms)
    memory_used = sum(v.memory for v in b.vms)
    return HostUsage(
        cores_total=cores_total,
        cores_used=cores_used,
        cores_available=cores_total - cores_used,
        memory_total=memory_total,
        memory_used=memory_used,
        memory_available=memory_total - memory_used,
        storage_total=sum(p.total for p in b.pools),
        storage_available=sum(p.available for p in b.pools),
        vms=len(b.vms),
    )


def host_public(b: HostBundle, secret_names: list[str]) -> KvmHost:
    row = b.row
    return KvmHost.model_validate(
        {
            **row.model_dump(exclude={"secrets"}),
            "tags": json.loads(row.tags),
            "secrets_set": secret_names,
            "storage_pools": b.pools,
            "networks": b.networks,
            "interfaces": b.interfaces,
            "usage": usage(b),
        }
    )


def vm_public(row: VmRow, host: HostRow) -> Vm:
    return Vm.model_validate(
        {
            **row.model_dump(),
            "disks": json.loads(row.disks),
            "interfaces": json.loads(row.interfaces),
            "power": {"uri": host.uri, "domain": row.uuid},
        }
    )


def found_vm_row(host_id: int, vm: FoundVm, now: datetime) -> VmRow:
    """A row for a VM discovery found on the host (not composed by metalbus)."""
    return VmRow(
        host_id=host_id,
        name=vm.name,
        uuid=vm.uuid,
        status=VmStatus.READY.value,
        composed=False,
        cores=vm.cores,
        memory=vm.memory,
        architecture=vm.arch,
        power_state=vm.power_state.value,
        disks=json.dumps(
            [
                VmDisk(label=f"disk{n}", pool=d.pool, volume=d.volume, size=d.size).model_dump()
                for n, d in enumerate(vm.disks)
            ]
        ),
        interfaces=json.dumps(
            [
                VmInterface(
                    name=f"eth{n}",
                    mac=nic.mac,
                    attach_type=_attach_type(nic.type),
                    source=nic.source,
                    mode=_macvlan_mode(nic.mode) if nic.type == "direct" else None,
                ).model_dump(mode="json")
                for n, nic in enumerate(vm.nics)
            ]
        ),
        network_boot=False,
        created_at=now,
        updated_at=now,
    )


def _macvlan_mode(mode: str | None) -> str | None:
    """MAAS's name of a libvirt macvtap mode (``passthrough`` is ``passthru``)."""
    mode = "passthru" if mode == "passthrough" else mode
    return mode if mode in {m.value for m in MacvlanMode} else None


def _attach_type(libvirt_type: str) -> str:
    return {"bridge": "bridge", "direct": "macvlan"}.get(libvirt_type, "network")


async def replace_discovered(
    session: AsyncSession,
    host_id: int,
    pools: list[StoragePool],
    networks: list[LibvirtNetwork],
    interfaces: list[HostInterface],
) -> None:
    """Replace a host's pools, networks and interfaces with what discovery found."""
    for model in (StoragePoolRow, NetworkRow, HostInterfaceRow):
        await session.exec(delete(model).where(col(model.host_id) == host_id))
    for p in pools:
        session.add(StoragePoolRow(host_id=host_id, **p.model_dump()))
    for n in networks:
        session.add(
            NetworkRow(host_id=host_id, **{**n.model_dump(), "addresses": json.dumps(n.addresses)})
        )
    for i in interfaces:
        data = i.model_dump(mode="json")
        session.add(
            HostInterfaceRow(
                host_id=host_id,
                **{
                    **data,
                    "members": json.dumps(data["members"]),
                    "links": json.dumps(data["links"]),
                },
            )
        )


async def update_pools(session: AsyncSession, host_id: int, pools: list[StoragePool]) -> None:
    """Record fresh pool sizes (after volumes were made or deleted)."""
    rows = {
        r.name: r
        for r in (
            await session.exec(select(StoragePoolRow).where(StoragePoolRow.host_id == host_id))
        ).all()
    }
    for p in pools:
        row = rows.get(p.name)
        if row is None:
            session.add(StoragePoolRow(host_id=host_id, **p.model_dump()))
            continue
        row.total, row.used, row.available, row.active = p.total, p.used, p.available, p.active
        session.add(row)


async def merge_vms(
    session: AsyncSession, host: HostRow, found: list[FoundVm]
) -> tuple[list[VmRow], list[VmRow]]:
    """Match found domains to VM rows by UUID: new ones are added, ready rows whose domain
    vanished are removed (rows being composed are left alone); (new, vanished)."""
    assert host.id is not None
    now = utcnow()
    rows = {
        r.uuid: r for r in (await session.exec(select(VmRow).where(VmRow.host_id == host.id))).all()
    }
    seen = {vm.uuid for vm in found}
    new: list[VmRow] = []
    for vm in found:
        row = rows.get(vm.uuid)
        if row is None:
            row = found_vm_row(host.id, vm, now)
            session.add(row)
            new.append(row)
            continue
        if row.status == VmStatus.COMPOSING.value:
            continue
        row.power_state = vm.power_state.value
        row.cores, row.memory = vm.cores, vm.memory
        row.updated_at = now
        session.add(row)
    vanished = [
        r for uuid, r in rows.items() if uuid not in seen and r.status == VmStatus.READY.value
    ]
    for row in vanished:
        await session.delete(row)
    await session.flush()
    return new, vanished


def dump(items: list[Any]) -> str:
    return json.dumps([i.model_dump(mode="json") for i in items])
