"""Composing and decomposing VMs.

A compose is one traced operation in four steps:

1. **Plan** (nothing changes): parse storage and interface constraints, pick the
   attachments (:mod:`.attach`), check every requested address is in a subnet ipam knows
   and not in use.
2. **Reserve** (one transaction, the host row locked): check cores and memory under the
   overcommit ratios and room in the chosen pools, counting what every VM on the host holds
   (VMs still being composed included), and insert the VM rows as ``composing``. A refusal
   names what is short and by how much; libvirt has not been touched.
3. **Make**, per VM: allocate its addresses in ipam (STICKY, owned by the VM), create its
   volumes, define the domain, set autostart, start it if asked (in a libvirt thread).
4. **Record**: the VM becomes ``ready`` with ``vm.composed`` in the same transaction.

A failure in 3 or 4 undoes what that VM had made (domain, volumes, addresses), deletes its
row and publishes ``vm.failed`` naming the stage and what was rolled back; VMs of the same
request not yet made are released too.
"""

from __future__ import annotations

import json
import logging
import secrets as random
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

import libvirt
from opentelemetry import trace
from sqlmodel import col, select

from metalbus.shared import telemetry
from metalbus.shared.contract.compose import (
    ComposeRequest,
    ComposeResult,
    DecomposeRequest,
    HostOrigin,
    MacvlanMode,
    StoragePool,
    Vm,
    VmComposed,
    VmComposeFailed,
    VmDecomposed,
    VmDisk,
    VmInterface,
    VmPowerState,
    VmQuery,
    VmStatus,
    VmXml,
)
from metalbus.shared.contract.ipam import ById, Page
from metalbus.shared.db import Database
from metalbus.shared.errors import (
    Conflict,
    InternalError,
    MetalbusError,
    NotFound,
    ValidationFailed,
)
from metalbus.shared.events import utcnow

from . import attach, domain, virt
from .hosts import Hosts
from .ipam import Ipam
from .models import HostRow, VmRow
from .settings import ComposeSettings
from .specs import GB, DiskSpec, InterfaceSpec, parse_interfaces, parse_storage
from .store import HostBundle, bundle, emit, get_host, get_vm, lock_host, update_pools, vm_public
from .virt import HostAccess, Libvirt, VolumePlan

log = logging.getLogger(__name__)


def _gb(size: int) -> str:
    return f"{size / GB:g} GB"


@dataclass
class _Made:
    """What one VM's making created so far (undone on failure)."""

    addresses: list[tuple[int, str]] = field(default_factory=list)
    stage: str = "ip_allocate"


class _LibvirtFailed(Exception):
    def __init__(self, error: MetalbusError, stage: str, rolled_back: list[str]) -> None:
        super().__init__(error.message)
        self.error = error
        self.stage = stage
        self.rolled_back = rolled_back


class Composer:
    """The VM commands."""

    def __init__(
        self,
        db: Database,
        lv: Libvirt,
        ipam: Ipam,
        hosts: Hosts,
        settings: ComposeSettings,
    ) -> None:
        self.db = db
        self.lv = lv
        self.ipam = ipam
        self.hosts = hosts
        self.settings = settings

    # -- reading ---------------------------------------------------------------------------

    async def get(self, req: ById) -> Vm:
        async with self.db.read() as session:
            vm = await get_vm(session, req.id)
            return vm_public(vm, await get_host(session, vm.host_id, field="host_id"))

    async def list_vms(self, req: VmQuery) -> Page[Vm]:
        query = select(VmRow).where(col(VmRow.id) > req.after)
        if req.host_id is not None:
            query = query.where(VmRow.host_id == req.host_id)
        async with self.db.read() as session:
            rows = list(
                (await session.exec(query.order_by(col(VmRow.id)).limit(req.limit + 1))).all()
            )
            more = len(rows) > req.limit
            hosts: dict[int, HostRow] = {}
            items = []
            for r in rows[: req.limit]:
                if r.host_id not in hosts:
                    hosts[r.host_id] = await get_host(session, r.host_id)
                items.append(vm_public(r, hosts[r.host_id]))
        return Page[Vm](items=items, next=rows[req.limit - 1].id if more else None)

    async def xml(self, req: ById) -> VmXml:
        async with self.db.read() as session:
            vm = await get_vm(session, req.id)
            host = await get_host(session, vm.host_id, field="host_id")
        text = await self.lv.run(self.hosts.access(host), lambda c: virt.domain_xml(c, vm.uuid))
        if text is None:
            raise NotFound(f"libvirt has no domain {vm.uuid} on host {host.name}", field="id")
        return VmXml(id=req.id, xml=text)

    # -- composing -------------------------------------------------------------------------

    async def compose(self, req: ComposeRequest) -> ComposeResult:
        with telemetry.span(
            "compose vm", kind=trace.SpanKind.INTERNAL, attributes={"host_id": str(req.host_id)}
        ):
            disks = parse_storage(req.storage, self.settings.default_disk_gb)
            specs = parse_interfaces(req.interfaces)
            async with self.db.read() as session:
                b = await bundle(session, await get_host(session, req.host_id, field="host_id"))
            host = b.row
            if req.architecture is not None and req.architecture not in (
                host.architecture,
                host.architecture.split("/")[0],
            ):
                raise ValidationFailed(
                    f"host {host.name} is {host.architecture}, not {req.architecture}",
                    field="architecture",
                )
            if req.count > 1 and any(s.ip for s in specs):
                raise ValidationFailed(
                    f"an interface with an ip can only be given to one VM (count is {req.count})",
                    field="interfaces",
                )
            plan = await self._plan_network(b, specs)
            for a in plan.attachments:
                if a.ip is not None:
                    await self._check_address(a.ip)
            access = self.hosts.access(host)
            domain_type = await self._domain_type(access, virt.libvirt_arch(host.architecture))
            rows, volumes = await self._reserve(req, disks, plan)
            result: list[Vm] = []
            for n, row in enumerate(rows):
                try:
                    result.append(
                        await self._make(row, host, access, volumes[n], plan, domain_type, req)
                    )
                except MetalbusError as exc:
                    await self._release_reservations(rows[n + 1 :])
                    if result:
                        exc.details = {**exc.details, "composed": [v.id for v in result]}
                    raise
            return ComposeResult(vms=result, warnings=plan.warnings)

    async def _plan_network(self, b: HostBundle, specs: list[InterfaceSpec]) -> attach.Plan:
        host = b.row
        net = attach.HostNetworking(
            name=host.name,
            origin=HostOrigin(host.origin),
            correlated=host.correlated,
            default_macvlan_mode=MacvlanMode(host.default_macvlan_mode),
            interfaces=b.interfaces,
            networks=b.networks,
        )
        if specs:
            if host.correlated:
                if any(s.space is not None and not s.space.isdigit() for s in specs):
                    net.spaces = await self.ipam.ids_by_name("space")
                if any(s.fabric is not None and not s.fabric.isdigit() for s in specs):
                    net.fabrics = await self.ipam.ids_by_name("fabric")
            return attach.constrained(net, specs)
        net.dhcp_vlans = await self.ipam.dhcp_vlans()
        net.served_networks = await self.ipam.served_networks(b.networks, net.dhcp_vlans)
        return attach.unconstrained(net)

    async def _check_address(self, address: str) -> None:
        if await self.ipam.subnet_of(address) is None:
            raise ValidationFailed(f"{address} is not in any subnet ipam knows", field="interfaces")
        holder = await self.ipam.in_use(address)
        if holder is not None:
            owner = f" by {holder.owner_type.value}:{holder.owner_id}" if holder.owner_type else ""
            raise Conflict(
                f"{address} is already in use ({holder.alloc_type.value}{owner})",
                field="interfaces",
            )

    async def _domain_type(self, access: HostAccess, arch: str) -> str:
        """``kvm`` where the host can run KVM guests of ``arch``, else ``qemu`` (TCG), else
        the driver's own (or the type the settings force, when the host offers it)."""
        offered = await self.lv.run(access, lambda conn: virt.domain_types(conn, arch))
        wanted = self.settings.domain_type
        if wanted != "auto":
            if wanted not in offered:
                raise Conflict(
                    f"the host offers domain types {', '.join(offered)}, not {wanted}",
                    field="host_id",
                )
            return wanted
        for kind in ("kvm", "qemu", *offered):
            if kind in offered:
                return kind
        raise Conflict("the host offers no domain type for guests", field="host_id")

    async def _reserve(
        self, req: ComposeRequest, disks: list[DiskSpec], plan: attach.Plan
    ) -> tuple[list[VmRow], list[list[VolumePlan]]]:
        """Check resources and insert the VM rows as ``composing`` (rules in the module doc)."""
        async with self.db.transaction() as session:
            host = await lock_host(session, req.host_id, field="host_id")
            b = await bundle(session, host)
            used_cores = sum(v.cores for v in b.vms)
            used_memory = sum(v.memory for v in b.vms)
            total_cores = int(host.cores * host.cpu_over_commit_ratio)
            total_memory = int(host.memory * host.memory_over_commit_ratio)
            for what, unit, asked, total, used, ratio, per in (
                ("cores", "", req.cores * req.count, total_cores, used_cores,
                 host.cpu_over_commit_ratio, host.cores),
                ("memory", " MiB", req.memory * req.count, total_memory, used_memory,
                 host.memory_over_commit_ratio, host.memory),
            ):  # fmt: skip
                available = total - used
                if asked > available:
                    raise Conflict(
                        f"not enough {what} on host {host.name}: {asked}{unit} asked, "
                        f"{max(available, 0)}{unit} available ({per}{unit} x {ratio:g} "
                        f"overcommit, {used}{unit} used); short by {asked - available}{unit}",
                        field=what,
                        details={
                            "asked": asked,
                            "available": available,
                            "short": asked - available,
                        },
                    )
            room = self._pool_room(b)
            names = {v.name for v in b.vms}
            taken_macs = {i["mac"] for v in b.vms for i in json.loads(v.interfaces) if i.get("mac")}
            rows: list[VmRow] = []
            volumes: list[list[VolumePlan]] = []
            now = utcnow()
            for n in range(req.count):
                name = self._name(req, n, names)
                names.add(name)
                vm_volumes = [
                    VolumePlan(self._pick_pool(b, room, d, host.default_storage_pool),
                               f"{name}-{d.label}", d.size)
                    for d in disks
                ]  # fmt: skip
                nics = []
                for a in plan.attachments:
                    mac = self._mac(taken_macs)
                    nics.append(
                        VmInterface(
                            name=a.label, mac=mac, attach_type=a.attach_type, source=a.source,
                            mode=a.mode, ip=None,
                        )
                    )  # fmt: skip
                row = VmRow(
                    host_id=req.host_id,
                    name=name,
                    uuid=str(uuidlib.uuid4()),
                    status=VmStatus.COMPOSING.value,
                    composed=True,
                    cores=req.cores,
                    memory=req.memory,
                    architecture=host.architecture,
                    power_state=VmPowerState.OFF.value,
                    zone=req.zone,
                    pool=req.pool,
                    disks=json.dumps(
                        [
                            VmDisk(
                                label=d.label,
                                pool=v.pool,
                                volume=v.name,
                                size=v.size,
                                tags=list(d.tags),
                            ).model_dump()
                            for d, v in zip(disks, vm_volumes, strict=True)
                        ]
                    ),
                    interfaces=json.dumps([i.model_dump(mode="json") for i in nics]),
                    network_boot=plan.network_boot,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                rows.append(row)
                volumes.append(vm_volumes)
            await session.flush()
        return rows, volumes

    @staticmethod
    def _pool_room(b: HostBundle) -> dict[str, int]:
        """Free bytes per active pool, less what VMs still being composed will take."""
        room = {p.name: p.available for p in b.pools if p.active}
        for vm in b.vms:
            if vm.status == VmStatus.COMPOSING.value:
                for d in json.loads(vm.disks):
                    if d["pool"] in room:
                        room[d["pool"]] -= d["size"]
        return room

    @staticmethod
    def _pick_pool(b: HostBundle, room: dict[str, int], disk: DiskSpec, default: str | None) -> str:
        """The tagged pool, else the default pool, else any pool with room (the roomiest);
        the disk's size is taken from its room."""
        active = [p for p in b.pools if p.active]
        if disk.tags:
            matching = [p for p in active if all(t in (p.name, p.type) for t in disk.tags)]
            if not matching:
                raise ValidationFailed(
                    f"no active storage pool of host {b.row.name} matches "
                    f"{'+'.join(disk.tags)} (disk {disk.label})",
                    field="storage",
                )
            candidates: list[StoragePool] = matching
        else:
            candidates = [p for p in active if p.name == default]
            if not candidates or room[candidates[0].name] < disk.size:
                candidates = sorted(active, key=lambda p: -room[p.name])
        for pool in candidates:
            if room[pool.name] >= disk.size:
                room[pool.name] -= disk.size
                return pool.name
        if not candidates:
            raise Conflict(f"host {b.row.name} has no active storage pool", field="storage")
        best = max(candidates, key=lambda p: room[p.name])
        free = max(room[best.name], 0)
        raise Conflict(
            f"not enough storage for disk {disk.label} ({_gb(disk.size)}): pool {best.name} "
            f"has {_gb(free)} free; short by {_gb(disk.size - free)}",
            field="storage",
            details={"asked": disk.size, "available": free, "short": disk.size - free},
        )

    def _name(self, req: ComposeRequest, n: int, names: set[str]) -> str:
        if req.hostname is not None:
            name = req.hostname if req.count == 1 else f"{req.hostname}-{n + 1}"
            if name in names:
                raise Conflict(f"host already has a VM named {name!r}", field="hostname")
            return name
        while True:
            name = f"vm-{random.token_hex(3)}"
            if name not in names:
                return name

    @staticmethod
    def _mac(taken: set[str]) -> str:
        while True:
            tail = random.token_bytes(3)
            mac = "52:54:00:" + ":".join(f"{b:02x}" for b in tail)
            if mac not in taken:
                taken.add(mac)
                return mac

    async def _make(
        self,
        row: VmRow,
        host: HostRow,
        access: HostAccess,
        volumes: list[VolumePlan],
        plan: attach.Plan,
        domain_type: str,
        req: ComposeRequest,
    ) -> Vm:
        made = _Made()
        nics = [VmInterface.model_validate(i) for i in json.loads(row.interfaces)]
        rolled_back: list[str] = []
        try:
            for nic, a in zip(nics, plan.attachments, strict=True):
                if a.ip is not None:
                    nic.ip_id = await self.ipam.allocate(
                        a.ip, owner_id=row.uuid, hostname=row.name, mac=nic.mac
                    )
                    nic.ip = a.ip
                    made.addresses.append((nic.ip_id, a.ip))
            made.stage = "volume_create"
            spec = domain.DomainSpec(
                name=row.name,
                uuid=row.uuid,
                domain_type=domain_type,
                arch=virt.libvirt_arch(host.architecture),
                cores=row.cores,
                memory_mib=row.memory,
                disks=(),
                nics=tuple(domain.NicDevice(n.mac, n.attach_type, n.source, n.mode) for n in nics),
                network_boot=row.network_boot,
                serial_log=f"{self.settings.serial_log_dir.rstrip('/')}/{row.name}-serial0.log",
            )
            pools, state = await self.lv.run(
                access, lambda conn: _make_domain(conn, spec, volumes, req.start)
            )
            made.stage = "record"
            async with self.db.transaction() as session:
                fresh = await get_vm(session, row.id or 0)
                fresh.status = VmStatus.READY.value
                fresh.power_state = state.value
                fresh.interfaces = json.dumps([n.model_dump(mode="json") for n in nics])
                fresh.updated_at = utcnow()
                session.add(fresh)
                await update_pools(session, host.id or 0, pools)
                await session.flush()
                vm = vm_public(fresh, host)
                emit(session, VmComposed(vm=vm, warnings=plan.warnings), f"vm/{fresh.id}")
            return vm
        except Exception as exc:
            if isinstance(exc, _LibvirtFailed):
                error, stage, rolled_back = exc.error, exc.stage, exc.rolled_back
            elif isinstance(exc, MetalbusError):
                error, stage = exc, made.stage
            else:
                log.exception("composing %s failed", row.name)
                error, stage = InternalError(f"composing {row.name} failed: {exc}"), made.stage
            if stage == "record":
                rolled_back += await self._undo_domain(access, row.uuid)
            for address_id, address in made.addresses:
                try:
                    await self.ipam.release(address_id)
                    rolled_back.append(f"address {address}")
                except MetalbusError as release_error:
                    log.error("could not release %s: %s", address, release_error)
            async with self.db.transaction() as session:
                gone = await session.get(VmRow, row.id)
                if gone is not None:
                    await session.delete(gone)
                emit(
                    session,
                    VmComposeFailed(
                        host_id=host.id or 0,
                        name=row.name,
                        stage=stage,
                        code=error.code,
                        message=error.message,
                        rolled_back=rolled_back,
                    ),
                    f"host/{host.id}",
                )
            if error is exc:
                raise
            raise error from exc

    async def _undo_domain(self, access: HostAccess, uuid: str) -> list[str]:
        def undo(conn: Any) -> list[str]:
            done = []
            for disk in virt.undefine(conn, uuid):
                if virt.delete_volume(conn, disk.pool, disk.volume):
                    done.append(f"volume {disk.pool}/{disk.volume}")
            return [f"domain {uuid}", *done]

        try:
            return await self.lv.run(access, undo)
        except Exception as exc:
            log.error("could not undo domain %s: %s", uuid, exc)
            return []

    async def _release_reservations(self, rows: list[VmRow]) -> None:
        if not rows:
            return
        async with self.db.transaction() as session:
            for row in rows:
                gone = await session.get(VmRow, row.id)
                if gone is not None:
                    await session.delete(gone)

    # -- decomposing -----------------------------------------------------------------------

    async def decompose(self, req: DecomposeRequest | ById) -> Vm:
        async with self.db.read() as session:
            row = await get_vm(session, req.id)
            host = await get_host(session, row.host_id, field="host_id")
        if row.status == VmStatus.COMPOSING.value:
            raise Conflict(f"VM {row.name} is still being composed", field="id")
        known = [(d["pool"], d["volume"]) for d in json.loads(row.disks)]

        def work(conn: Any) -> list[StoragePool]:
            disks = virt.undefine(conn, row.uuid)
            for pool, volume in dict.fromkeys([*known, *((d.pool, d.volume) for d in disks)]):
                virt.delete_volume(conn, pool, volume)
            return virt.pools(conn)

        try:
            pools = await self.lv.run(self.hosts.access(host), work)
        except libvirt.libvirtError as exc:
            raise Conflict(
                f"libvirt on host {host.name} could not decompose {row.name}: "
                f"{exc.get_error_message()}",
                field="id",
            ) from None
        released = []
        for nic in json.loads(row.interfaces):
            if nic.get("ip_id"):
                await self.ipam.release(nic["ip_id"])
                released.append(nic["ip"])
        async with self.db.transaction() as session:
            fresh = await session.get(VmRow, row.id)
            vm = vm_public(row, host)
            if fresh is not None:
                await session.delete(fresh)
            await update_pools(session, host.id or 0, pools)
            emit(session, VmDecomposed(vm=vm, released=released), f"vm/{row.id}")
        return vm


def _make_domain(
    conn: Any, spec: domain.DomainSpec, volumes: list[VolumePlan], start: bool
) -> tuple[list[StoragePool], VmPowerState]:
    """Create the volumes, define (autostart, start) the domain; undo all of it on failure."""
    created: list[VolumePlan] = []
    devices = []
    stage = "volume_create"
    try:
        for plan in volumes:
            fmt = virt.create_volume(conn, plan)
            created.append(plan)
            devices.append(domain.DiskDevice(plan.pool, plan.name, fmt))
        stage = "define"
        xml = domain.build(domain.DomainSpec(**{**spec.__dict__, "disks": tuple(devices)}))
        dom = virt.define(conn, xml, start=start)
        return virt.pools(conn), virt.power_state(dom)
    except (libvirt.libvirtError, MetalbusError) as exc:
        rolled_back = []
        for plan in reversed(created):
            try:
                if virt.delete_volume(conn, plan.pool, plan.name):
                    rolled_back.append(f"volume {plan.pool}/{plan.name}")
            except libvirt.libvirtError as undo_error:
                log.error("could not delete volume %s/%s: %s", plan.pool, plan.name, undo_error)
        error = (
            exc
            if isinstance(exc, MetalbusError)
            else Conflict(f"libvirt refused at {stage}: {exc.get_error_message()}")
        )
        raise _LibvirtFailed(error, stage, rolled_back) from exc
