"""Allocating a machine by constraints, composing one on a KVM host when none is Ready.

Ready machines are tried in id order; the first that has what was asked for is taken with
a conditional update (``status = ready`` in the WHERE clause), so two allocations at once
never get the same machine. Only when none fits, and composing is allowed and possible
(no tags asked for, no particular machine named), each KVM host with room is asked to
compose one, and the VM's machine is returned allocated (MAAS's dynamic allocation).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.bus import Bus
from metalbus.shared.contract import compose as c
from metalbus.shared.contract.machines import MachineStatus
from metalbus.shared.db import Database
from metalbus.shared.errors import Conflict, MetalbusError, ValidationFailed

from . import store
from .consumers import machine_for_vm
from .models import Machine, MachineLink, ResourcePool, Zone
from .shapes import AllocateRequest
from .states import Action

log = logging.getLogger(__name__)
GB = 1000**3
# [0-9], not \d: \d also matches other scripts' digits.
_STORAGE = re.compile(
    r"^(?P<label>[A-Za-z0-9_-]+):(?P<size>[0-9]+(\.[0-9]+)?)(\((?P<tags>[^)]*)\))?$"
)
MAX_DISK_BYTES = 2**63 - 1  # the largest size a 64-bit signed database column holds
_INTERFACE_KEYS = {"subnet", "vlan"}
_ASCII_DIGITS = re.compile(r"^[0-9]{1,18}$")  # str.isdigit() also takes "²", which int() refuses


@dataclass(frozen=True)
class Constraints:
    """An allocation request, parsed."""

    request: AllocateRequest
    zone_id: int | None
    pool_id: int | None
    disks: list[int]  # sizes in bytes, largest first
    interfaces: list[dict[str, int]]  # per label: subnet and/or vlan ids


def parse_storage(text: str | None) -> list[int]:
    """``root:20,data:100(ssd)`` -> sizes in bytes (tags name storage pools of KVM hosts)."""
    if not text:
        return []
    sizes = []
    for entry in text.split(","):
        match = _STORAGE.match(entry.strip())
        if match is None:
            raise ValidationFailed(
                f"{entry!r} is not label:size(tags) with the size in GB", field="body.storage"
            )
        # Decimal, not float: a long digit string is a number, never inf (OverflowError).
        size = int(Decimal(match["size"]) * GB)
        if size > MAX_DISK_BYTES:
            raise ValidationFailed(f"{entry!r}: the size is too large", field="body.storage")
        sizes.append(size)
    return sorted(sizes, reverse=True)


def parse_interfaces(text: str | None) -> list[dict[str, int]]:
    """``eth0:subnet=3;eth1:vlan=5`` -> one dict of ids per label."""
    if not text:
        return []
    wanted = []
    for entry in text.split(";"):
        label, colon, rest = entry.strip().partition(":")
        if not colon or not label:
            raise ValidationFailed(f"{entry!r} is not label:key=value,...", field="body.interfaces")
        keys: dict[str, int] = {}
        for pair in rest.split(","):
            key, equals, value = pair.strip().partition("=")
            if key not in _INTERFACE_KEYS or not equals or not _ASCII_DIGITS.match(value):
                raise ValidationFailed(
                    f"{pair!r}: machines are matched by subnet=<id> or vlan=<id>",
                    field="body.interfaces",
                )
            keys[key] = int(value)
        wanted.append(keys)
    return wanted


async def _fits(session: AsyncSession, machine: Machine, want: Constraints) -> bool:
    r = want.request
    if r.cores is not None and machine.cores < r.cores:
        return False
    if r.memory is not None and machine.memory < r.memory:
        return False
    if (
        r.architecture is not None
        and machine.architecture.split("/")[0] != r.architecture.split("/")[0]
    ):
        return False
    if want.zone_id is not None and machine.zone_id != want.zone_id:
        return False
    if want.pool_id is not None and machine.pool_id != want.pool_id:
        return False
    if not set(r.tags) <= set(json.loads(machine.tags)):
        return False
    if want.disks:
        # Largest wanted first onto the largest disks: a greedy match is exact here.
        sizes = sorted((int(d["size"]) for d in json.loads(machine.disks)), reverse=True)
        if len(sizes) < len(want.disks) or any(
            s < w for s, w in zip(sizes, want.disks, strict=False)
        ):
            return False
    if want.interfaces:
        interfaces = await store.interfaces_of(session, machine)
        links = await store.links_of(session, interfaces)
        free = {i.id: [link for link in links if link.interface_id == i.id] for i in interfaces}
        for keys in want.interfaces:
            match = next((i for i, ls in free.items() if _links_match(ls, keys)), None)
            if match is None:
                return False
            del free[match]
    return True


def _links_match(links: list[MachineLink], keys: dict[str, int]) -> bool:
    return any(
        ("subnet" not in keys or link.subnet_id == keys["subnet"])
        and ("vlan" not in keys or link.vlan_id == keys["vlan"])
        for link in links
    )


async def _parse(session: AsyncSession, request: AllocateRequest) -> Constraints:
    zone = (
        await store.named_by_name(session, Zone, request.zone, "body.zone")
        if request.zone
        else None
    )
    pool = (
        await store.named_by_name(session, ResourcePool, request.pool, "body.pool")
        if request.pool
        else None
    )
    return Constraints(
        request,
        zone.id if zone else None,
        pool.id if pool else None,
        parse_storage(request.storage),
        parse_interfaces(request.interfaces),
    )


async def allocate(db: Database, bus: Bus, request: AllocateRequest, owner: str) -> str:
    """Allocate a machine to ``owner``; returns its system id. Raises Conflict if none fits."""
    async with db.transaction() as session:
        want = await _parse(session, request)
        query = select(Machine).where(Machine.status == MachineStatus.READY)
        if request.system_id is not None:
            query = query.where(Machine.system_id == request.system_id)
        for machine in (await session.exec(query.order_by(col(Machine.id)))).all():
            if not await _fits(session, machine, want):
                continue
            taken = await session.exec(
                update(Machine)
                .where(col(Machine.id) == machine.id, Machine.status == MachineStatus.READY)
                # Writes nothing new: it locks the row (PostgreSQL) and proves it is still
                # Ready, so a concurrent allocation that got here first wins cleanly.
                .values(status=MachineStatus.READY)
            )
            if taken.rowcount != 1:
                continue
            await store.move(session, machine, Action.ALLOCATE, f"allocated to {owner}")
            machine.owner = owner
            return machine.system_id
    if not request.compose or request.tags or request.system_id is not None:
        raise Conflict("no Ready machine matches the constraints", field="body")
    vm = await _compose(bus, request)
    try:
        return await _allocate_vm(db, vm, owner)
    except IntegrityError:
        # compose's vm.composed consumer made the machine at the same moment (on
        # PostgreSQL the two inserts meet): a second try finds the machine it made.
        return await _allocate_vm(db, vm, owner)


async def _allocate_vm(db: Database, vm: c.Vm, owner: str) -> str:
    async with db.transaction() as session:
        machine = await machine_for_vm(session, vm)
        message = f"composed on KVM host {vm.host_id} for {owner}"
        await store.move(session, machine, Action.ALLOCATE, message)
        machine.owner = owner
        return machine.system_id


async def _compose(bus: Bus, request: AllocateRequest) -> c.Vm:
    """Compose one VM on the first KVM host that can; Conflict naming why none could."""
    cores, memory = request.cores or 1, request.memory or 2048
    reasons: list[str] = []
    after = 0
    while True:
        page = await bus.request(
            c.HOST_LIST, c.KvmHostQuery(zone=request.zone, pool=request.pool, after=after)
        )
        for host in page.items:
            arch = request.architecture
            if arch is not None and host.architecture.split("/")[0] != arch.split("/")[0]:
                reasons.append(f"{host.name}: architecture {host.architecture}")
                continue
            if host.usage.cores_available < cores or host.usage.memory_available < memory:
                reasons.append(
                    f"{host.name}: {host.usage.cores_available} cores and "
                    f"{host.usage.memory_available} MiB free"
                )
                continue
            try:
                result = await bus.request(
                    c.VM_COMPOSE,
                    c.ComposeRequest(
                        host_id=host.id,
                        cores=cores,
                        memory=memory,
                        architecture=arch,
                        zone=request.zone,
                        pool=request.pool,
                        storage=request.storage,
                        interfaces=request.interfaces,
                    ),
                )
            except (Conflict, ValidationFailed) as exc:
                reasons.append(f"{host.name}: {exc.message}")
                continue
            except MetalbusError as exc:
                if exc.retryable:
                    raise
                reasons.append(f"{host.name}: {exc.message}")
                continue
            log.info("composed VM %s on KVM host %s for an allocation", result.vms[0].id, host.id)
            vm: c.Vm = result.vms[0]
            return vm
        if page.next is None:
            break
        after = page.next
    why = "; ".join(reasons) if reasons else "there is no KVM host"
    raise Conflict(
        f"no Ready machine matches the constraints and none can be composed ({why})", field="body"
    )
