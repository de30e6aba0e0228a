"""Address arithmetic on integers: a subnet's usable span, and sets of addresses as sorted,
disjoint, inclusive ``(first, last)`` spans.

Nothing here enumerates addresses: every operation costs O(number of spans), so an IPv6
/64 or an IPv4 /8 costs what a /30 does. The database keeps addresses as fixed-width
big-endian bytes (:func:`address_key`), which sort the same way in SQLite and PostgreSQL.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Span = tuple[int, int]
"""Consecutive addresses, both ends included."""
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ADDRESS_BYTES = 16
SIZE_BYTES = 17  # an IPv6 /0 holds 2**128 addresses: one byte more than an address


def address_key(value: int) -> bytes:
    """The sortable database form of an address (IPv4 or IPv6)."""
    return value.to_bytes(ADDRESS_BYTES, "big")


def size_key(value: int) -> bytes:
    """The sortable database form of a block size."""
    return value.to_bytes(SIZE_BYTES, "big")


def from_key(key: bytes) -> int:
    """The address (or size) a key stands for."""
    return int.from_bytes(key, "big")


def to_text(value: int, version: int) -> str:
    """An address in its usual text form."""
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def usable_span(network: Network) -> Span | None:
    """The addresses of a subnet that may ever be assigned.

    Not the IPv4 network and broadcast addresses (except in a /31 or /32, RFC 3021), nor
    the IPv6 subnet-router anycast address (the first one; RFC 4291 2.6.1) except in a
    /127 or /128 (RFC 6164). None when nothing is left.
    """
    first = int(network.network_address)
    last = int(network.broadcast_address)
    if network.version == 4 and network.prefixlen < 31:
        first, last = first + 1, last - 1
    elif network.version == 6 and network.prefixlen < 127:
        first += 1
    return (first, last) if first <= last else None


def span_size(span: Span) -> int:
    """How many addresses a span holds."""
    return span[1] - span[0] + 1


def total_size(spans: Iterable[Span]) -> int:
    """How many addresses some spans hold."""
    return sum(last - first + 1 for first, last in spans)


def normalise(spans: Iterable[Span]) -> list[Span]:
    """Sorted, disjoint, maximal spans covering the same addresses (adjacent ones merge)."""
    out: list[Span] = []
    for first, last in sorted(spans):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def subtract(spans: Sequence[Span], holes: Iterable[Span]) -> list[Span]:
    """``spans`` minus ``holes``; both may be in any order, the result is normalised."""
    result = normalise(spans)
    for hole_first, hole_last in normalise(holes):
        kept: list[Span] = []
        for first, last in result:
            if last < hole_first or first > hole_last:
                kept.append((first, last))
                continue
            if first < hole_first:
                kept.append((first, hole_first - 1))
            if last > hole_last:
                kept.append((hole_last + 1, last))
        result = kept
    return result


def subtract_points(spans: Sequence[Span], points: Iterable[int]) -> list[Span]:
    """``spans`` (normalised) minus single addresses, in one pass over sorted points."""
    ordered = sorted(set(points))
    out: list[Span] = []
    index = 0
    for first, last in spans:
        while index < len(ordered) and ordered[index] < first:
            index += 1
        start = first
        while index < len(ordered) and ordered[index] <= last:
            point = ordered[index]
            if point > start:
                out.append((start, point - 1))
            start = point + 1
            index += 1
        if start <= last:
            out.append((start, last))
    return out


def intersect(spans: Sequence[Span], window: Span) -> list[Span]:
    """The parts of ``spans`` inside ``window``."""
    lo, hi = window
    return [(max(first, lo), min(last, hi)) for first, last in spans if last >= lo and first <= hi]


def contains(spans: Sequence[Span], value: int) -> bool:
    """Whether an address is in any of the spans."""
    return any(first <= value <= last for first, last in spans)
