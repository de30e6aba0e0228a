"""The free blocks of a subnet: what "next free" hands out, kept in the database.

A subnet's *assignable* addresses are its usable span minus its ranges (managed) or only
its reserved ranges (unmanaged), minus its gateway, DNS servers and route gateways. Its
*free blocks* are the assignable addresses not in use, as maximal runs (table
``ipam_free_block``). Every change to a subnet calls :func:`rebuild` for the window it
touched, inside the same transaction, under the subnet's lock; so the blocks are always
exactly "assignable minus used", which the property tests check against a brute-force
model.

Costs: next free (:func:`metalbus.ipam.claims.claim_next_free`) is one indexed read and one
write; :func:`rebuild` reads the blocks and
used addresses of its window only (one address for an allocation or release, a range for
a range change, the whole subnet only when ``managed`` flips).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract.ipam import IpRangeType

from .models import FreeBlockRow, IpAddressRow, IpRangeRow, StaticRouteRow, SubnetRow
from .spans import (
    Network,
    Span,
    address_key,
    from_key,
    intersect,
    normalise,
    size_key,
    span_size,
    subtract,
    subtract_points,
    total_size,
    usable_span,
)


@dataclass(frozen=True)
class SubnetLayout:
    """What decides a subnet's assignable addresses (no addresses in use)."""

    network: Network
    managed: bool
    ranges: tuple[tuple[int, int, IpRangeType], ...]
    infrastructure: frozenset[int]

    @property
    def usable(self) -> Span | None:
        """The span of addresses that may ever be assigned."""
        return usable_span(self.network)

    @property
    def total(self) -> int:
        """How many addresses the subnet can ever assign (its statistics' ``total``)."""
        return span_size(self.usable) if self.usable else 0

    def assignable(self) -> list[Span]:
        """Addresses automatic assignment may use when none is in use (sorted spans)."""
        usable = self.usable
        if usable is None:
            return []
        if self.managed:
            spans = subtract([usable], [(s, e) for s, e, _ in self.ranges])
        else:
            reserved = [(s, e) for s, e, kind in self.ranges if kind is IpRangeType.RESERVED]
            spans = intersect(normalise(reserved), usable)
        return subtract_points(spans, self.infrastructure)

    def range_of(self, value: int) -> tuple[int, int, IpRangeType] | None:
        """The range an address falls in, if any."""
        return next((r for r in self.ranges if r[0] <= value <= r[1]), None)


def network_of(subnet: SubnetRow) -> Network:
    """The subnet's network object."""
    return ipaddress.ip_network(subnet.cidr)


def addresses_inside(network: Network, texts: Iterable[str | None]) -> list[int]:
    """The given addresses that fall inside ``network`` (others, and None, are skipped)."""
    out = []
    for text in texts:
        if text is None:
            continue
        address = ipaddress.ip_address(text)
        if address.version == network.version and address in network:
            out.append(int(address))
    return out


def infrastructure_of(subnet: SubnetRow, route_gateways: Sequence[str]) -> frozenset[int]:
    """Gateway, DNS servers and route gateways that fall inside the subnet."""
    candidates = [subnet.gateway_ip, *json.loads(subnet.dns_servers), *route_gateways]
    return frozenset(addresses_inside(network_of(subnet), candidates))


async def load_layout(session: AsyncSession, subnet: SubnetRow) -> SubnetLayout:
    """Read the subnet's ranges and route gateways."""
    ranges = (await session.exec(select(IpRangeRow).where(IpRangeRow.subnet_id == subnet.id))).all()
    gateways = (
        await session.exec(
            select(StaticRouteRow.gateway_ip).where(StaticRouteRow.source_subnet_id == subnet.id)
        )
    ).all()
    return SubnetLayout(
        network=network_of(subnet),
        managed=subnet.managed,
        ranges=tuple(
            sorted(
                (from_key(r.start_key), from_key(r.end_key), IpRangeType(r.type)) for r in ranges
            )
        ),
        infrastructure=infrastructure_of(subnet, gateways),
    )


async def rebuild(
    session: AsyncSession, subnet: SubnetRow, layout: SubnetLayout, first: int, last: int
) -> None:
    """Recompute the free blocks for the addresses ``first..last`` from the current state.

    The caller changed nothing outside that window (one address, a range, the subnet).
    Blocks overlapping or touching the window are replaced, so blocks stay maximal.
    ``subnet.available`` moves by the difference; the caller adds ``subnet`` to the session.
    """
    sid = subnet.id
    before = first - 1 if first > 0 else first
    previous = (
        await session.exec(
            select(FreeBlockRow)
            .where(
                FreeBlockRow.subnet_id == sid, col(FreeBlockRow.start_key) <= address_key(before)
            )
            .order_by(col(FreeBlockRow.start_key).desc())
            .limit(1)
        )
    ).first()
    inner = (
        await session.exec(
            select(FreeBlockRow.start_key, FreeBlockRow.end_key).where(
                FreeBlockRow.subnet_id == sid,
                col(FreeBlockRow.start_key) > address_key(before),
                col(FreeBlockRow.start_key) <= address_key(last + 1),
            )
        )
    ).all()
    old: list[Span] = [(from_key(s), from_key(e)) for s, e in inner]
    if previous is not None and from_key(previous.end_key) >= before:
        old.append((from_key(previous.start_key), from_key(previous.end_key)))
    low = min([first, *(s for s, _ in old)])
    high = max([last, *(e for _, e in old)])
    if old:
        await session.exec(
            delete(FreeBlockRow).where(
                col(FreeBlockRow.subnet_id) == sid,
                col(FreeBlockRow.start_key) >= address_key(low),
                col(FreeBlockRow.start_key) <= address_key(high),
            )
        )
    used = (
        await session.exec(
            select(IpAddressRow.ip_key).where(
                IpAddressRow.subnet_id == sid,
                col(IpAddressRow.ip_key) >= address_key(low),
                col(IpAddressRow.ip_key) <= address_key(high),
            )
        )
    ).all()
    new = subtract_points(intersect(layout.assignable(), (low, high)), map(from_key, used))
    if new:
        await session.exec(
            insert(FreeBlockRow),
            params=[
                {
                    "subnet_id": sid,
                    "start_key": address_key(s),
                    "end_key": address_key(e),
                    "size_key": size_key(e - s + 1),
                }
                for s, e in new
            ],
        )
    subnet.available = str(int(subnet.available) + total_size(new) - total_size(old))


async def free_blocks(
    session: AsyncSession, subnet_id: int, *, limit: int | None = None
) -> list[Span]:
    """The subnet's free blocks in address order (the first ``limit`` of them)."""
    query = (
        select(FreeBlockRow.start_key, FreeBlockRow.end_key)
        .where(FreeBlockRow.subnet_id == subnet_id)
        .order_by(col(FreeBlockRow.start_key))
    )
    if limit is not None:
        query = query.limit(limit)
    return [(from_key(s), from_key(e)) for s, e in (await session.exec(query)).all()]


async def largest_free_block(session: AsyncSession, subnet_id: int) -> Span | None:
    """The largest free block (the lowest one among equals)."""
    row = (
        await session.exec(
            select(FreeBlockRow.start_key, FreeBlockRow.end_key)
            .where(FreeBlockRow.subnet_id == subnet_id)
            .order_by(col(FreeBlockRow.size_key).desc(), col(FreeBlockRow.start_key))
            .limit(1)
        )
    ).first()
    return None if row is None else (from_key(row[0]), from_key(row[1]))


async def is_free(session: AsyncSession, subnet_id: int, value: int) -> bool:
    """Whether an address lies in a free block."""
    row = (
        await session.exec(
            select(FreeBlockRow.end_key)
            .where(
                FreeBlockRow.subnet_id == subnet_id,
                col(FreeBlockRow.start_key) <= address_key(value),
            )
            .order_by(col(FreeBlockRow.start_key).desc())
            .limit(1)
        )
    ).first()
    return row is not None and from_key(row) >= value
