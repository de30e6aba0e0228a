"""What ipam learns from other services' events, and its housekeeping loops.

- boot ``lease.committed`` / ``lease.ended``: a DHCP address while the lease lasts. A lease
  whose end never arrives (boot lost it, a crash) is freed by :func:`sweep_expired_leases`.
- discovery ``neighbour.new`` / ``refreshed`` / ``moved``: the address is DISCOVERED, so
  it is never handed out while something answers on it; ``neighbour.cleared`` frees it.

Events about addresses in no known subnet are acknowledged and ignored: ipam only tracks
its own address space. A lease or observation on an address assigned to something else is
logged as a conflict and changes nothing (the assignment stands).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from datetime import datetime

from pydantic import ValidationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract.boot import LeaseCommitted, LeaseEnded
from metalbus.shared.contract.discovery import (
    HostAnswered,
    NeighbourCleared,
    NeighbourObservation,
)
from metalbus.shared.contract.ipam import AddressAllocated, AddressType
from metalbus.shared.errors import NotFound, ValidationFailed
from metalbus.shared.events import EVENT_TYPES, RawEvent, utcnow
from metalbus.shared.runtime import ServiceRuntime

from .addresses import address_row, remove_address
from .models import IpAddressRow, SubnetRow
from .settings import IpamSettings
from .spans import address_key, to_text
from .store import address_public, emit, lock_subnet
from .subnets import refresh_pool, subnet_holding

log = logging.getLogger(__name__)


def _payload(event: RawEvent) -> object | None:
    model = EVENT_TYPES.get(event.type)
    if model is None:
        log.info("ipam ignores event type %s it does not know", event.type)
        return None
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise ValidationFailed(
            f"event {event.id} has a bad payload: {exc.errors()[0]['msg']}"
        ) from exc


async def _locked_subnet_of(session: AsyncSession, ip: str) -> SubnetRow | None:
    try:
        found = await subnet_holding(session, ip, "ip")
    except NotFound:
        return None
    return await lock_subnet(session, found.id or 0)


async def _add(
    session: AsyncSession,
    settings: IpamSettings,
    subnet: SubnetRow,
    ip: str,
    kind: AddressType,
    mac: str | None,
    hostname: str | None = None,
    lease_expires_at: datetime | None = None,
) -> None:
    value = int(ipaddress.ip_address(ip))
    now = utcnow()
    row = IpAddressRow(
        subnet_id=subnet.id or 0,
        ip=to_text(value, subnet.ip_version),
        ip_key=address_key(value),
        alloc_type=kind.value,
        mac=mac,
        hostname=hostname,
        lease_expires_at=lease_expires_at,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await refresh_pool(session, subnet, [(value, value)], settings)
    await session.flush()
    emit(session, AddressAllocated(address=address_public(row), vlan_id=subnet.vlan_id), row.ip)


def lease_consumer(rt: ServiceRuntime, settings: IpamSettings):  # type: ignore[no-untyped-def]
    """Apply boot's lease events (one transaction each, once per event id)."""

    async def apply(session: AsyncSession, event: RawEvent) -> None:
        payload = _payload(event)
        if not isinstance(payload, LeaseCommitted | LeaseEnded):
            return
        subnet = await _locked_subnet_of(session, payload.ip)
        if subnet is None:
            return
        existing = await address_row(session, subnet.id or 0, int(ipaddress.ip_address(payload.ip)))
        if isinstance(payload, LeaseEnded):
            if (
                existing is not None
                and existing.alloc_type == AddressType.DHCP.value
                and existing.mac == payload.mac
            ):
                await remove_address(session, subnet, existing, f"lease_{payload.reason}", settings)
            return
        if existing is not None:
            if existing.alloc_type == AddressType.DHCP.value and existing.mac == payload.mac:
                existing.lease_expires_at = payload.expires_at  # a renewal: no event
                existing.hostname = payload.hostname or existing.hostname
                existing.updated_at = utcnow()
                session.add(existing)
                return
            if existing.alloc_type not in (AddressType.DHCP.value, AddressType.DISCOVERED.value):
                if existing.mac != payload.mac:
                    log.warning(
                        "lease conflict: %s leased to %s but assigned to %s (%s)",
                        payload.ip,
                        payload.mac,
                        existing.mac or existing.owner_id,
                        existing.alloc_type,
                    )
                return  # a host reservation in use, or a conflict: the assignment stands
            await remove_address(session, subnet, existing, "replaced")
        await _add(
            session,
            settings,
            subnet,
            payload.ip,
            AddressType.DHCP,
            payload.mac,
            hostname=payload.hostname,
            lease_expires_at=payload.expires_at,
        )

    return apply


def neighbour_consumer(rt: ServiceRuntime, settings: IpamSettings):  # type: ignore[no-untyped-def]
    """Apply discovery's neighbour events: observed addresses count as used."""

    async def apply(session: AsyncSession, event: RawEvent) -> None:
        payload = _payload(event)
        if not isinstance(payload, NeighbourObservation | NeighbourCleared):
            return
        subnet = await _locked_subnet_of(session, payload.ip)
        if subnet is None:
            return
        existing = await address_row(session, subnet.id or 0, int(ipaddress.ip_address(payload.ip)))
        if isinstance(payload, NeighbourCleared):
            if existing is not None and existing.alloc_type == AddressType.DISCOVERED.value:
                await remove_address(session, subnet, existing, "cleared", settings)
            return
        if existing is None:
            await _add(session, settings, subnet, payload.ip, AddressType.DISCOVERED, payload.mac)
        elif existing.alloc_type == AddressType.DISCOVERED.value and existing.mac != payload.mac:
            existing.mac = payload.mac  # the address moved to another MAC
            existing.updated_at = utcnow()
            session.add(existing)

    return apply


def answered_host_consumer(rt: ServiceRuntime, settings: IpamSettings):  # type: ignore[no-untyped-def]
    """Apply discovery's ping-scan answers: an address that answers is in use, though its
    MAC is unknown (the answer came through a router). Anything already recorded stays."""

    async def apply(session: AsyncSession, event: RawEvent) -> None:
        payload = _payload(event)
        if not isinstance(payload, HostAnswered):
            return
        subnet = await _locked_subnet_of(session, payload.ip)
        if subnet is None:
            return
        value = int(ipaddress.ip_address(payload.ip))
        if await address_row(session, subnet.id or 0, value) is None:
            await _add(session, settings, subnet, payload.ip, AddressType.DISCOVERED, None)

    return apply


async def sweep_expired_leases(rt: ServiceRuntime, settings: IpamSettings, batch: int = 500) -> int:
    """Free DHCP addresses whose lease has ended; returns how many."""
    freed = 0
    async with rt.db.read() as session:
        rows = (
            await session.exec(
                select(IpAddressRow.id, IpAddressRow.subnet_id)
                .where(
                    IpAddressRow.alloc_type == AddressType.DHCP.value,
                    col(IpAddressRow.lease_expires_at) < utcnow(),
                )
                .limit(batch)
            )
        ).all()
    by_subnet: dict[int, list[int]] = {}
    for address_id, subnet_id in rows:
        by_subnet.setdefault(subnet_id, []).append(address_id or 0)
    for subnet_id, ids in by_subnet.items():
        async with rt.db.transaction() as session:
            subnet = await lock_subnet(session, subnet_id)
            for address_id in ids:
                row = await session.get(IpAddressRow, address_id, populate_existing=True)
                expires = row.lease_expires_at if row is not None else None
                if row is None or expires is None:
                    continue
                if expires.tzinfo is None:
                    expires = expires.replace(tzinfo=utcnow().tzinfo)
                if expires < utcnow() and row.alloc_type == AddressType.DHCP.value:
                    await remove_address(session, subnet, row, "expired", settings)
                    freed += 1
    return freed


def housekeeping(rt: ServiceRuntime, settings: IpamSettings, forget_keys):  # type: ignore[no-untyped-def]
    """The loop that frees ended leases and forgets old idempotency keys."""

    async def run() -> None:
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await sweep_expired_leases(rt, settings)
                if loop.time() - last_prune > 3600:
                    await forget_keys()
                    last_prune = loop.time()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a while: try again next round
                log.exception(
                    "ipam housekeeping failed; it runs again in %ss", settings.lease_sweep_s
                )
            await asyncio.sleep(settings.lease_sweep_s)  # deliberate interval between sweeps

    return run
