"""KVM hosts: add (discovering at once), refresh, update, delete.

Discovery runs in a libvirt thread; what ipam knows (correlation, the VLANs of the host's
addresses) is asked over the bus; the result is written in one transaction with its event.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from metalbus.shared.contract.compose import (
    HostAdded,
    HostDeleted,
    HostInterface,
    HostRefreshed,
    HostUpdated,
    KvmHost,
    KvmHostCreate,
    KvmHostDelete,
    KvmHostQuery,
    KvmHostUpdate,
    VmStatus,
)
from metalbus.shared.contract.ipam import ById, Page, UpdateRequest
from metalbus.shared.db import Database
from metalbus.shared.errors import Conflict, ServiceUnavailable, ValidationFailed
from metalbus.shared.events import utcnow
from metalbus.shared.secrets import SecretBox

from . import virt
from .ipam import Ipam
from .models import HostInterfaceRow, HostRow, NetworkRow, StoragePoolRow, VmRow
from .store import (
    bundle,
    emit,
    get_host,
    host_public,
    lock_host,
    merge_vms,
    replace_discovered,
    vm_public,
)
from .virt import Discovery, HostAccess, Libvirt

SECRET_FIELDS = ("password", "ssh_key")
_NOT_NULL = (
    "uri",
    "name",
    "tags",
    "cpu_over_commit_ratio",
    "memory_over_commit_ratio",
    "default_macvlan_mode",
    "origin",
)


@dataclass
class Discovered:
    """Discovery plus what ipam said about the host."""

    found: Discovery
    interfaces: list[HostInterface]
    correlated_with: str | None


def _host_ip(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValidationFailed(f"{value!r} is not an IP address", field=field) from None


def uri_address(uri: str) -> str | None:
    """The URI's host when it is an IP address (``qemu+ssh://root@10.0.0.2/system``)."""
    host = urllib.parse.urlsplit(uri).hostname
    if host is None:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _default_name(hostname: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", hostname.split(".")[0]).strip("-._")[:63]
    return name or "kvm-host"


class Hosts:
    """The host commands."""

    def __init__(self, db: Database, lv: Libvirt, box: SecretBox, ipam: Ipam) -> None:
        self.db = db
        self.lv = lv
        self.box = box
        self.ipam = ipam

    def access(self, row: HostRow) -> HostAccess:
        secrets = self.box.open(row.secrets)
        return HostAccess(row.uri, secrets.get("password"), secrets.get("ssh_key"))

    def public(self, b: Any) -> KvmHost:
        return host_public(b, sorted(self.box.open(b.row.secrets)))

    async def discover(self, access: HostAccess, host_ip: str | None) -> Discovered:
        """Discovery, correlation and, for a correlated host, its interfaces mapped by ipam."""
        found = await self.lv.run(access, virt.discover)
        candidates = [a for a in (host_ip, uri_address(access.uri)) if a]
        candidates += [
            str(ipaddress.ip_interface(link.address).ip)
            for iface in found.interfaces
            for link in iface.links
        ]
        correlated_with = await self.ipam.correlate(candidates)
        interfaces = found.interfaces
        if correlated_with is not None:
            try:
                interfaces = await self.ipam.map_interfaces(found.interfaces)
            except ServiceUnavailable:
                correlated_with = None
        return Discovered(found, interfaces, correlated_with)

    @staticmethod
    def _check_pool(name: str | None, found: Discovery) -> None:
        if name is not None and name not in {p.name for p in found.pools}:
            known = ", ".join(p.name for p in found.pools) or "none"
            raise ValidationFailed(
                f"the host has no storage pool {name!r} (it has: {known})",
                field="default_storage_pool",
            )

    async def create(self, req: KvmHostCreate) -> KvmHost:
        host_ip = _host_ip(req.host_ip, "host_ip")
        secrets = {k: v for k, v in (("password", req.password), ("ssh_key", req.ssh_key)) if v}
        access = HostAccess(req.uri, req.password, req.ssh_key)
        d = await self.discover(access, host_ip)
        self._check_pool(req.default_storage_pool, d.found)
        name = req.name or _default_name(d.found.hostname)
        now = utcnow()
        async with self.db.transaction() as session:
            taken = (await session.exec(select(HostRow.id).where(HostRow.name == name))).first()
            if taken is not None:
                raise Conflict(f"a KVM host named {name!r} exists", field="name")
            row = HostRow(
                name=name,
                uri=req.uri,
                secrets=self.box.seal(secrets),
                host_ip=host_ip or uri_address(req.uri),
                zone=req.zone,
                pool=req.pool,
                tags=json.dumps(req.tags),
                cpu_over_commit_ratio=req.cpu_over_commit_ratio,
                memory_over_commit_ratio=req.memory_over_commit_ratio,
                default_storage_pool=req.default_storage_pool,
                default_macvlan_mode=req.default_macvlan_mode.value,
                origin=req.origin.value,
                architecture=d.found.architecture,
                cores=d.found.cores,
                cpu_speed=d.found.cpu_speed,
                memory=d.found.memory,
                correlated=d.correlated_with is not None,
                correlated_with=d.correlated_with,
                refreshed_at=now,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await session.flush()
            assert row.id is not None
            await replace_discovered(session, row.id, d.found.pools, d.found.networks, d.interfaces)
            await merge_vms(session, row, d.found.vms)
            host = self.public(await bundle(session, row))
            emit(session, HostAdded(host=host), f"host/{row.id}")
        return host

    async def get(self, req: ById) -> KvmHost:
        async with self.db.read() as session:
            return self.public(await bundle(session, await get_host(session, req.id)))

    async def list_hosts(self, req: KvmHostQuery) -> Page[KvmHost]:
        query = select(HostRow).where(col(HostRow.id) > req.after)
        if req.zone is not None:
            query = query.where(HostRow.zone == req.zone)
        if req.pool is not None:
            query = query.where(HostRow.pool == req.pool)
        async with self.db.read() as session:
            rows = list(
                (await session.exec(query.order_by(col(HostRow.id)).limit(req.limit + 1))).all()
            )
            more = len(rows) > req.limit
            items = [self.public(await bundle(session, r)) for r in rows[: req.limit]]
        return Page[KvmHost](items=items, next=rows[req.limit - 1].id if more else None)

    async def refresh(self, req: ById) -> KvmHost:
        async with self.db.read() as session:
            row = await get_host(session, req.id)
        d = await self.discover(self.access(row), row.host_ip)
        async with self.db.transaction() as session:
            row = await lock_host(session, req.id)
            self._apply(row, d)
            session.add(row)
            await replace_discovered(session, req.id, d.found.pools, d.found.networks, d.interfaces)
            new, vanished = await merge_vms(session, row, d.found.vms)
            host = self.public(await bundle(session, row))
            emit(
                session,
                HostRefreshed(
                    host=host,
                    new_vms=[vm_public(v, row) for v in new],
                    vanished_vms=[vm_public(v, row) for v in vanished],
                ),
                f"host/{row.id}",
            )
        return host

    @staticmethod
    def _apply(row: HostRow, d: Discovered) -> None:
        now = utcnow()
        row.architecture = d.found.architecture
        row.cores, row.cpu_speed, row.memory = d.found.cores, d.found.cpu_speed, d.found.memory
        row.correlated = d.correlated_with is not None
        row.correlated_with = d.correlated_with
        row.refreshed_at = now
        row.updated_at = now

    async def update(self, req: UpdateRequest[KvmHostUpdate]) -> KvmHost:
        changes = req.changes
        given = changes.model_fields_set
        for name in _NOT_NULL:
            if name in given and getattr(changes, name) is None:
                raise ValidationFailed(f"{name} cannot be null", field=f"changes.{name}")
        async with self.db.read() as session:
            row = await get_host(session, req.id)
        secrets = self.box.open(row.secrets)
        for name in SECRET_FIELDS:
            if name in given:
                value = getattr(changes, name)
                if value is None:
                    secrets.pop(name, None)
                else:
                    secrets[name] = value
        host_ip = (
            _host_ip(changes.host_ip, "changes.host_ip") if "host_ip" in given else row.host_ip
        )
        uri = changes.uri if changes.uri is not None else row.uri
        rediscover = bool(given & {"uri", "host_ip", *SECRET_FIELDS})
        d: Discovered | None = None
        if rediscover:
            access = HostAccess(uri, secrets.get("password"), secrets.get("ssh_key"))
            try:
                d = await self.discover(access, host_ip)
            except ServiceUnavailable as exc:
                raise ServiceUnavailable(exc.message, field="changes.uri") from exc
        async with self.db.transaction() as session:
            row = await lock_host(session, req.id)
            if "default_storage_pool" in given and changes.default_storage_pool is not None:
                pools = d.found.pools if d is not None else (await bundle(session, row)).pools
                if changes.default_storage_pool not in {p.name for p in pools}:
                    raise ValidationFailed(
                        f"the host has no storage pool {changes.default_storage_pool!r}",
                        field="changes.default_storage_pool",
                    )
            if "name" in given and changes.name != row.name:
                taken = (
                    await session.exec(select(HostRow.id).where(HostRow.name == changes.name))
                ).first()
                if taken is not None:
                    raise Conflict(
                        f"a KVM host named {changes.name!r} exists", field="changes.name"
                    )
            for name in given - {*SECRET_FIELDS, "host_ip"}:
                value = getattr(changes, name)
                if name == "tags":
                    value = json.dumps(value)
                elif name in ("default_macvlan_mode", "origin"):
                    value = value.value
                setattr(row, name, value)
            row.host_ip = host_ip or uri_address(row.uri)
            row.secrets = self.box.seal(secrets)
            row.updated_at = utcnow()
            if d is not None:
                self._apply(row, d)
                await replace_discovered(
                    session, req.id, d.found.pools, d.found.networks, d.interfaces
                )
                await merge_vms(session, row, d.found.vms)
            session.add(row)
            await session.flush()
            host = self.public(await bundle(session, row))
            emit(session, HostUpdated(host=host), f"host/{row.id}")
        return host

    async def delete(self, req: KvmHostDelete, decompose: Any) -> KvmHost:
        """Forget a host; with ``decompose`` first decompose every VM metalbus composed on
        it (VMs found there are left alone). ``decompose`` is the VM decomposer."""
        async with self.db.read() as session:
            row = await get_host(session, req.id)
            vms = (await session.exec(select(VmRow).where(VmRow.host_id == req.id))).all()
        decomposed: list[int] = []
        if req.decompose:
            for vm in vms:
                if vm.composed and vm.status == VmStatus.READY.value:
                    assert vm.id is not None
                    await decompose(ById(id=vm.id))
                    decomposed.append(vm.id)
        access = self.access(row)
        async with self.db.transaction() as session:
            row = await lock_host(session, req.id)
            host = self.public(await bundle(session, row))
            if any(v.status == VmStatus.COMPOSING.value for v in (await bundle(session, row)).vms):
                raise Conflict("VMs are being composed on this host; try again", field="id")
            for model in (VmRow, StoragePoolRow, NetworkRow, HostInterfaceRow):
                for child in (
                    await session.exec(select(model).where(model.host_id == req.id))
                ).all():
                    await session.delete(child)
            await session.delete(row)
            emit(session, HostDeleted(host=host, decomposed=decomposed), f"host/{req.id}")
        await self.lv.run_plain(self.lv.forget, access)
        return host
