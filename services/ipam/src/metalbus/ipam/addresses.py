"""Addresses in use: allocate (a given one or the next free), release, look up, statistics,
and what DHCP is delegated.

Allocation runs under the subnet's lock (:func:`metalbus.ipam.store.lock_subnet`), so two
replicas on one PostgreSQL never hand out one address twice, and the unique index on
(subnet, address) would stop them if they tried. A request with an idempotency key stores
its answer in the same transaction; a retry finds it and gets the same address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract.ipam import (
    ASSIGNABLE_TYPES,
    AddressAllocated,
    AddressBlock,
    AddressReleased,
    AddressType,
    AllocateAddress,
    DhcpConfig,
    DhcpSubnet,
    DhcpVlan,
    HostReservation,
    IpAddress,
    IpAddressQuery,
    IpRangeType,
    Page,
    RangeStatistics,
    ReleaseAddress,
    StatisticsRequest,
    SubnetExhausted,
    SubnetStatistics,
)
from metalbus.shared.db import Database
from metalbus.shared.errors import AddressExhausted, Conflict, NotFound, ValidationFailed
from metalbus.shared.events import utcnow

from .claims import claim_next_free, prior_answer, remember
from .models import IpAddressRow, IpRangeRow, RequestKeyRow, SubnetRow, VlanRow
from .pool import free_blocks, is_free, largest_free_block, load_layout, network_of
from .settings import IpamSettings
from .spans import Span, address_key, from_key, span_size, to_text
from .store import (
    address_public,
    emit,
    get_row,
    lock_subnet,
    page_of,
    range_public,
    subnets_public,
    vlan_public,
)
from .subnets import address_in, refresh_pool, subnet_holding

log = logging.getLogger(__name__)


class Allocator:
    """The address commands of one replica (it remembers when it last reported exhaustion)."""

    def __init__(self, db: Database, settings: IpamSettings) -> None:
        self.db = db
        self.settings = settings
        self._exhausted_reported: dict[int, float] = {}

    # -- allocate -------------------------------------------------------------------------

    async def allocate(self, request: AllocateAddress) -> IpAddress:
        """Assign ``request.ip``, or the next free address of ``request.subnet_id``.

        Raises:
            ValidationFailed: neither subnet nor address given, a type that cannot be
                allocated, an address outside the subnet or not usable.
            NotFound: no such subnet, or the address is in no known subnet.
            Conflict: the address is taken, in a dynamic range, or infrastructure; or the
                idempotency key was used for another request.
            AddressExhausted: no free address is left in the subnet.
        """
        if request.alloc_type not in ASSIGNABLE_TYPES:
            raise ValidationFailed(
                f"{request.alloc_type.value} addresses come from the boot and discovery "
                "services; allocate auto, sticky or user_reserved",
                field="alloc_type",
            )
        if request.subnet_id is None and request.ip is None:
            raise ValidationFailed("give subnet_id, ip, or both", field="subnet_id")
        key = _request_key("allocate", request.idempotency_key)
        fingerprint = _fingerprint(request)
        try:
            return await self._allocate(request, key, fingerprint)
        except AddressExhausted:
            await self._report_exhausted(request)
            raise
        except IntegrityError as exc:
            # Another replica committed the same idempotency key, or took the address
            # between our check and our insert (only possible without the subnet lock).
            if key is not None:
                async with self.db.read() as session:
                    prior = await _prior_answer(session, key, fingerprint)
                if prior is not None:
                    return IpAddress.model_validate_json(prior)
            raise Conflict("the address was taken by a concurrent request", field="ip") from exc

    async def _allocate(
        self, request: AllocateAddress, key: str | None, fingerprint: str
    ) -> IpAddress:
        if request.ip is None:
            claim = partial(
                claim_next_free,
                request=request,
                key=key,
                fingerprint=fingerprint,
                default_threshold=self.settings.low_free_threshold,
            )
            return await self.db.run_transaction(claim)
        async with self.db.transaction() as session:
            if request.subnet_id is not None:
                subnet = await lock_subnet(session, request.subnet_id, field="subnet_id")
            else:
                found = await subnet_holding(session, request.ip, "ip")
                subnet = await lock_subnet(session, found.id or 0, field="ip")
            if key is not None:
                prior = await _prior_answer(session, key, fingerprint)
                if prior is not None:
                    return IpAddress.model_validate_json(prior)
            value = await self._check_given(session, subnet, request.ip)
            now = utcnow()
            row = IpAddressRow(
                subnet_id=subnet.id or 0,
                ip=to_text(value, subnet.ip_version),
                ip_key=address_key(value),
                alloc_type=request.alloc_type.value,
                owner_type=request.owner_type.value if request.owner_type else None,
                owner_id=request.owner_id,
                hostname=request.hostname,
                mac=request.mac,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await refresh_pool(session, subnet, [(value, value)], self.settings)
            await session.flush()
            public = address_public(row)
            emit(session, AddressAllocated(address=public, vlan_id=subnet.vlan_id), public.ip)
            await _remember(session, key, fingerprint, public)
            return public

    async def _check_given(self, session: AsyncSession, subnet: SubnetRow, text: str) -> int:
        """The given address, if it may be assigned now; a DISCOVERED one gives way."""
        network = network_of(subnet)
        value = address_in(network, text, "ip")
        existing = await address_row(session, subnet.id or 0, value)
        if existing is not None:
            if existing.alloc_type != AddressType.DISCOVERED.value:
                owner = f" ({existing.owner_type} {existing.owner_id})" if existing.owner_id else ""
                raise Conflict(
                    f"{text} is already in use as {existing.alloc_type}{owner}",
                    field="ip",
                    details={"address_id": existing.id},
                )
            # Something answered on this address; the operator now says what it is.
            await remove_address(session, subnet, existing, "replaced")
        layout = await load_layout(session, subnet)
        in_range = layout.range_of(value)
        if in_range is not None and in_range[2] is IpRangeType.DYNAMIC:
            raise Conflict(
                f"{text} is in the dynamic range {to_text(in_range[0], network.version)}-"
                f"{to_text(in_range[1], network.version)}, which DHCP leases from",
                field="ip",
            )
        if value in layout.infrastructure:
            raise Conflict(
                f"{text} is the gateway, a DNS server or a route gateway of {subnet.cidr}",
                field="ip",
            )
        return value

    async def _report_exhausted(self, request: AllocateAddress) -> None:
        subnet_id = request.subnet_id
        if subnet_id is None:
            return
        last = self._exhausted_reported.get(subnet_id)
        now = time.monotonic()
        if last is not None and now - last < self.settings.exhausted_event_interval_s:
            return
        self._exhausted_reported[subnet_id] = now
        try:
            async with self.db.transaction() as session:
                subnet = await get_row(session, SubnetRow, subnet_id)
                emit(
                    session,
                    SubnetExhausted(
                        subnet_id=subnet_id, cidr=subnet.cidr, requested_by=request.owner_id
                    ),
                    f"subnet/{subnet_id}",
                )
        except Exception:  # the caller gets its error whether or not the event is recorded
            log.exception("could not record that subnet %s is exhausted", subnet_id)

    # -- release --------------------------------------------------------------------------

    async def release(self, request: ReleaseAddress) -> IpAddress:
        """Free an assigned address (by id or address).

        Raises:
            ValidationFailed: neither id nor ip given.
            NotFound: no such address in use.
            Conflict: a DHCP or DISCOVERED address (they end with their lease or observation).
        """
        if request.id is None and request.ip is None:
            raise ValidationFailed("give the address's id or ip", field="id")
        key = _request_key("release", request.idempotency_key)
        fingerprint = _fingerprint(request)
        async with self.db.transaction() as session:
            if key is not None:
                prior = await _prior_answer(session, key, fingerprint)
                if prior is not None:
                    return IpAddress.model_validate_json(prior)
            if request.id is not None:
                found = await get_row(session, IpAddressRow, request.id)
                field = "id"
            else:
                assert request.ip is not None
                subnet_row = await subnet_holding(session, request.ip, "ip")
                found_or_none = await address_row(
                    session, subnet_row.id or 0, int(ipaddress.ip_address(request.ip))
                )
                if found_or_none is None:
                    raise NotFound(f"{request.ip} is not in use", field="ip")
                found, field = found_or_none, "ip"
            subnet = await lock_subnet(session, found.subnet_id, field="subnet_id")
            row = await session.get(IpAddressRow, found.id, populate_existing=True)
            if row is None:
                raise NotFound(f"address {found.ip} was released meanwhile", field=field)
            if row.alloc_type in (AddressType.DHCP.value, AddressType.DISCOVERED.value):
                raise Conflict(
                    f"{row.ip} is a {row.alloc_type} address: it ends with its lease or when "
                    "the discovery is cleared",
                    field=field,
                )
            public = await remove_address(session, subnet, row, "released", self.settings)
            await _remember(session, key, fingerprint, public)
            return public

    # -- reads ----------------------------------------------------------------------------

    async def get(self, address_id: int) -> IpAddress:
        async with self.db.read() as session:
            return address_public(await get_row(session, IpAddressRow, address_id))

    async def list(self, request: IpAddressQuery) -> Page[IpAddress]:
        conditions: list[Any] = []
        if request.subnet_id is not None:
            conditions.append(IpAddressRow.subnet_id == request.subnet_id)
        if request.alloc_type is not None:
            conditions.append(IpAddressRow.alloc_type == request.alloc_type.value)
        if request.owner_type is not None:
            conditions.append(IpAddressRow.owner_type == request.owner_type.value)
        if request.owner_id is not None:
            conditions.append(IpAddressRow.owner_id == request.owner_id)
        if request.mac is not None:
            conditions.append(IpAddressRow.mac == request.mac)
        if request.ip is not None:
            conditions.append(
                IpAddressRow.ip_key == address_key(int(ipaddress.ip_address(request.ip)))
            )
        async with self.db.read() as session:
            return await page_of(session, IpAddressRow, request, address_public, *conditions)

    async def statistics(self, request: StatisticsRequest) -> SubnetStatistics:
        """Use of a subnet and its ranges, free blocks, and suggestions for a new subnet."""
        async with self.db.read() as session:
            subnet = await get_row(session, SubnetRow, request.id)
            sid = subnet.id or 0
            version = subnet.ip_version
            layout = await load_layout(session, subnet)
            listed = await free_blocks(session, sid, limit=request.free_block_limit + 1)
            largest = await largest_free_block(session, sid)
            ranges = (
                await session.exec(
                    select(IpRangeRow)
                    .where(IpRangeRow.subnet_id == sid)
                    .order_by(col(IpRangeRow.start_key))
                )
            ).all()
            range_stats = [await _range_statistics(session, r) for r in ranges]
            gateway = None
            if subnet.gateway_ip is None and layout.usable is not None:
                for candidate in layout.usable:
                    if await _unclaimed(session, subnet, layout, candidate):
                        gateway = to_text(candidate, version)
                        break
        total = layout.total
        available = int(subnet.available)
        dynamic = None
        has_dynamic = any(kind is IpRangeType.DYNAMIC for _, _, kind in layout.ranges)
        if largest is not None and subnet.managed and not has_dynamic:
            size = span_size(largest) // 2 if version == 4 else min(65536, span_size(largest) // 2)
            if size >= 2:
                dynamic = _block((largest[1] - size + 1, largest[1]), version)
        return SubnetStatistics(
            subnet_id=sid,
            cidr=subnet.cidr,
            ip_version=version,
            total=total,
            used=total - available,
            available=available,
            utilisation=(total - available) / total if total else 1.0,
            largest_free_block=_block(largest, version) if largest else None,
            free_blocks=[_block(b, version) for b in listed[: request.free_block_limit]],
            free_blocks_truncated=len(listed) > request.free_block_limit,
            ranges=range_stats,
            suggested_gateway=gateway,
            suggested_dynamic_range=dynamic,
        )

    async def dhcp_config(self) -> DhcpConfig:
        """VLANs serving DHCP and the VLANs relaying to them, with what DHCP needs of each."""
        async with self.db.read() as session:
            serving = (
                await session.exec(select(VlanRow).where(col(VlanRow.dhcp_on).is_(True)))
            ).all()
            serving_ids = [v.id for v in serving]
            relaying = (
                await session.exec(
                    select(VlanRow).where(col(VlanRow.relay_vlan_id).in_(serving_ids))
                )
            ).all()
            out = []
            for vlan in sorted([*serving, *relaying], key=lambda v: v.id or 0):
                subnets = (
                    await session.exec(
                        select(SubnetRow)
                        .where(SubnetRow.vlan_id == vlan.id, col(SubnetRow.managed).is_(True))
                        .order_by(col(SubnetRow.id))
                    )
                ).all()
                items = []
                for subnet, public in zip(
                    subnets, await subnets_public(session, subnets), strict=True
                ):
                    ranges = (
                        await session.exec(
                            select(IpRangeRow).where(
                                IpRangeRow.subnet_id == subnet.id,
                                IpRangeRow.type == IpRangeType.DYNAMIC.value,
                            )
                        )
                    ).all()
                    reservations = (
                        await session.exec(
                            select(IpAddressRow).where(
                                IpAddressRow.subnet_id == subnet.id,
                                col(IpAddressRow.mac).is_not(None),
                                col(IpAddressRow.alloc_type).in_(
                                    [t.value for t in ASSIGNABLE_TYPES]
                                ),
                            )
                        )
                    ).all()
                    items.append(
                        DhcpSubnet(
                            subnet=public,
                            dynamic_ranges=[range_public(r) for r in ranges],
                            reservations=[
                                HostReservation(
                                    address_id=a.id or 0,
                                    ip=a.ip,
                                    mac=a.mac or "",
                                    hostname=a.hostname,
                                )
                                for a in reservations
                            ],
                        )
                    )
                out.append(DhcpVlan(vlan=vlan_public(vlan), subnets=items))
            return DhcpConfig(vlans=out)

    async def forget_request_keys(self) -> int:
        """Drop idempotency keys older than the configured time to live."""
        cutoff = utcnow() - timedelta(hours=self.settings.idempotency_ttl_h)
        async with self.db.transaction() as session:
            result = await session.exec(
                delete(RequestKeyRow).where(col(RequestKeyRow.created_at) < cutoff)
            )
            return int(result.rowcount or 0)


# -- helpers shared with the event feeds ---------------------------------------------------


async def address_row(session: AsyncSession, subnet_id: int, value: int) -> IpAddressRow | None:
    """The address in use at ``value``, if any."""
    return (
        await session.exec(
            select(IpAddressRow).where(
                IpAddressRow.subnet_id == subnet_id, IpAddressRow.ip_key == address_key(value)
            )
        )
    ).first()


async def remove_address(
    session: AsyncSession,
    subnet: SubnetRow,
    row: IpAddressRow,
    reason: str,
    settings: IpamSettings | None = None,
) -> IpAddress:
    """Delete an address, give it back to the free blocks, and say so (event ``released``)."""
    public = address_public(row)
    await session.delete(row)
    if settings is not None:
        value = from_key(row.ip_key)
        await refresh_pool(session, subnet, [(value, value)], settings)
    emit(session, AddressReleased(address=public, vlan_id=subnet.vlan_id, reason=reason), public.ip)
    return public


def _request_key(action: str, key: str | None) -> str | None:
    return None if key is None else f"{action}:{key}"


def _fingerprint(request: AllocateAddress | ReleaseAddress) -> str:
    body = request.model_dump_json(exclude={"idempotency_key"})
    return hashlib.sha256(body.encode()).hexdigest()


async def _remember(
    session: AsyncSession, key: str | None, fingerprint: str, answer: IpAddress
) -> None:
    await session.run_sync(lambda s: remember(s.connection(), key, fingerprint, answer))


async def _prior_answer(session: AsyncSession, key: str, fingerprint: str) -> str | None:
    return await session.run_sync(lambda s: prior_answer(s.connection(), key, fingerprint))


async def _range_statistics(session: AsyncSession, row: IpRangeRow) -> RangeStatistics:
    used = int(
        (
            await session.exec(
                select(func.count())
                .select_from(IpAddressRow)
                .where(
                    IpAddressRow.subnet_id == row.subnet_id,
                    col(IpAddressRow.ip_key) >= row.start_key,
                    col(IpAddressRow.ip_key) <= row.end_key,
                )
            )
        ).one()
    )
    total = from_key(row.end_key) - from_key(row.start_key) + 1
    return RangeStatistics(
        range_id=row.id or 0,
        type=IpRangeType(row.type),
        start_ip=row.start_ip,
        end_ip=row.end_ip,
        total=total,
        used=used,
        available=total - used,
        utilisation=used / total,
    )


async def _unclaimed(session: AsyncSession, subnet: SubnetRow, layout: Any, value: int) -> bool:
    """Not in use, not in a range, not infrastructure: free to become the gateway."""
    if layout.range_of(value) is not None or value in layout.infrastructure:
        return False
    if await is_free(session, subnet.id or 0, value):
        return True
    return await address_row(session, subnet.id or 0, value) is None


def _block(span: Span, version: int) -> AddressBlock:
    return AddressBlock(
        start=to_text(span[0], version), end=to_text(span[1], version), size=span_size(span)
    )
