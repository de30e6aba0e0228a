"""Machines from other services' events: enlistment and boot progress (boot), composed
VMs (compose).

The consumers run in the runtime's idempotent inbox (each event applied once), and each
is idempotent by itself too: a MAC or a VM the api already knows changes nothing, so a
second event about the same machine (boot repeats ``pxe.unknown_mac`` after its interval)
never makes a second machine, and a boot file fetched again only moves the progress time.
"""

from __future__ import annotations

import json
import logging

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract import boot as b
from metalbus.shared.contract import compose as c
from metalbus.shared.contract import machines as m
from metalbus.shared.events import RawEvent, as_utc
from metalbus.shared.runtime import ServiceRuntime

from ..devices.models import DeviceInterface
from . import store
from .models import Machine, ResourcePool, Zone

log = logging.getLogger(__name__)

BOOTING = frozenset(
    {
        m.MachineStatus.COMMISSIONING,
        m.MachineStatus.DEPLOYING,
        m.MachineStatus.TESTING,
        m.MachineStatus.RESCUE_MODE,
    }
)
"""Statuses whose flow network-boots the machine: boot files fetched in them are progress."""

FETCHED: dict[str, tuple[type[b.TftpTransferCompleted] | type[b.HttpBootFileServed], str]] = {
    b.TftpTransferCompleted.event_type(): (b.TftpTransferCompleted, "tftp"),
    b.HttpBootFileServed.event_type(): (b.HttpBootFileServed, "http"),
}

ARCHITECTURES = {
    0: "i386/generic",  # BIOS PXE: MAAS's default guess for x86 BIOS
    6: "i386/generic",
    7: "amd64/generic",
    9: "amd64/generic",
    10: "armhf/generic",
    11: "arm64/generic",
    16: "amd64/generic",
    19: "arm64/generic",
}
"""DHCP option 93 (client system architecture, RFC 4578 and IANA) to MAAS's names."""


async def enlist(session: AsyncSession, event: RawEvent) -> None:
    """An unknown MAC network-booted: it becomes a New machine."""
    if event.type != b.PxeUnknownMac.event_type():
        return
    seen = b.PxeUnknownMac.model_validate(event.data)
    if await store.machine_by_mac(session, seen.mac) is not None:
        return
    known = select(DeviceInterface).where(DeviceInterface.mac == seen.mac)
    if (await session.exec(known)).first() is not None:
        return  # a device's MAC (a phone that PXE boots) is not a machine to enlist
    architecture = ARCHITECTURES.get(seen.arch if seen.arch is not None else 0, "amd64/generic")
    machine = await store.create_machine(
        session,
        cause="enlisted",
        interfaces=[("eth0", seen.mac, seen.vlan_id)],
        architecture=architecture,
    )
    log.info("enlisted machine %s (%s)", machine.system_id, seen.mac)


async def boot_progress(session: AsyncSession, event: RawEvent) -> None:
    """A machine in a booting status fetched a boot file: record it as its progress.

    No status moves (the boot environment's callback completes the flow); the progress
    time holds off the stuck-machine time-out. A fetch from before the machine entered
    its status (a late event about an earlier boot) is not its progress.
    """
    known = FETCHED.get(event.type)
    if known is None:
        return
    payload_type, via = known
    fetched = payload_type.model_validate(event.data)
    if fetched.mac is None or fetched.file_kind is None:
        return  # a client boot cannot name, or a file that is no boot file
    # Locked: a callback or a flow step may be moving the machine right now.
    machine = await store.machine_by_mac(session, fetched.mac, lock=True)
    if machine is None:
        return
    status = m.MachineStatus(machine.status)
    at = as_utc(event.time)
    if status not in BOOTING or at < as_utc(machine.status_changed_at):
        return
    progress = f"{fetched.file_kind} fetched"
    if machine.boot_progress_at is None or at > as_utc(machine.boot_progress_at):
        machine.boot_progress_at = at
    session.add(machine)
    if machine.boot_progress == progress:
        return  # the same step again (a retried fetch): only its time
    machine.boot_progress = progress
    store.stage(
        session,
        m.MachineBootProgress(
            system_id=machine.system_id,
            status=status,
            progress=progress,
            filename=fetched.filename,
            via=via,
            mac=fetched.mac,
        ),
        machine.system_id,
    )
    log.info("machine %s: %s (%s over %s)", machine.system_id, progress, fetched.mac, via)


async def _named_id(
    session: AsyncSession, table: type[Zone] | type[ResourcePool], name: str | None
) -> int:
    """The id of the zone or pool called ``name``; the default one if there is none."""
    row = (await session.exec(select(table).where(table.name == (name or store.DEFAULT)))).first()
    if row is None:
        row = (await session.exec(select(table).where(table.name == store.DEFAULT))).one()
    assert row.id is not None
    return row.id


async def vm_changed(session: AsyncSession, event: RawEvent) -> None:
    """A VM was composed (it becomes a New machine) or decomposed (its machine goes)."""
    if event.type == c.VmComposed.event_type():
        await machine_for_vm(session, c.VmComposed.model_validate(event.data).vm)
    elif event.type == c.VmDecomposed.event_type():
        vm = c.VmDecomposed.model_validate(event.data).vm
        # Locked: the release flow may be deleting the same machine right now.
        query = select(Machine).where(Machine.vm_id == vm.id).with_for_update()
        machine = (await session.exec(query)).first()
        if machine is not None:
            await store.delete_machine(session, machine)


async def machine_for_vm(session: AsyncSession, vm: c.Vm) -> Machine:
    """The machine of a composed VM, made New (power: virsh on the host's URI) if missing.

    The allocation that asked for the VM and the ``vm.composed`` consumer both call this;
    whichever comes second finds the machine the first made.
    """
    existing = (await session.exec(select(Machine).where(Machine.vm_id == vm.id))).first()
    if existing is not None:
        return existing
    hostname: str | None = vm.name
    if (await session.exec(select(Machine).where(Machine.hostname == hostname))).first():
        hostname = None
    machine = await store.create_machine(
        session,
        cause="composed",
        interfaces=[(i.name, i.mac, None) for i in vm.interfaces],
        hostname=hostname,
        architecture=vm.architecture,
        cores=vm.cores,
        memory=vm.memory,
        storage=sum(d.size for d in vm.disks),
        disks=json.dumps([{"name": d.label, "size": d.size, "pool": d.pool} for d in vm.disks]),
        zone_id=await _named_id(session, Zone, vm.zone),
        pool_id=await _named_id(session, ResourcePool, vm.pool),
        power_driver="virsh",
        # compose's power settings for a VM are the host's URI and the domain: no secret.
        power_parameters=json.dumps(vm.power),
        power_pending=True,
        pod_id=vm.host_id,
        vm_id=vm.id,
    )
    log.info("machine %s for VM %s on KVM host %s", machine.system_id, vm.id, vm.host_id)
    return machine


def register(runtime: ServiceRuntime) -> None:
    """The api's consumers of boot's PXE and boot file events and compose's VM events."""
    runtime.consumer("boot", "enlist", enlist, filter_subject=b.PxeUnknownMac.subject())
    for payload_type, via in FETCHED.values():
        runtime.consumer(
            "boot", f"boot_progress_{via}", boot_progress, filter_subject=payload_type.subject()
        )
    runtime.consumer("compose", "machines", vm_changed)
