"""The interval arithmetic next-free relies on, against plain Python sets."""

from __future__ import annotations

import ipaddress
import itertools

from hypothesis import given
from hypothesis import strategies as st

from metalbus.ipam.spans import (
    address_key,
    from_key,
    normalise,
    size_key,
    subtract,
    subtract_points,
    total_size,
    usable_span,
)

spans = st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 30)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=8,
)


def members(items: list[tuple[int, int]]) -> set[int]:
    return {v for first, last in items for v in range(first, last + 1)}


@given(spans)
def test_normalise_keeps_members_and_makes_maximal_disjoint_spans(
    items: list[tuple[int, int]],
) -> None:
    out = normalise(items)
    assert members(out) == members(items)
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(out))


@given(spans, spans)
def test_subtract_is_set_difference(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    out = subtract(a, b)
    assert members(out) == members(a) - members(b)
    assert total_size(out) == len(members(out))


@given(spans, st.lists(st.integers(0, 240), max_size=20))
def test_subtract_points_is_set_difference(a: list[tuple[int, int]], points: list[int]) -> None:
    assert members(subtract_points(normalise(a), points)) == members(a) - set(points)


@given(st.integers(0, 2**128 - 1))
def test_keys_sort_like_the_numbers_they_stand_for(value: int) -> None:
    assert from_key(address_key(value)) == value
    assert from_key(size_key(value + 1)) == value + 1
    assert (address_key(value) < address_key(value + 1)) if value < 2**128 - 1 else True


def test_usable_span_skips_network_broadcast_and_subnet_router_anycast() -> None:
    def span(cidr: str) -> tuple[str, str] | None:
        network = ipaddress.ip_network(cidr)
        found = usable_span(network)
        if found is None:
            return None
        make = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
        return str(make(found[0])), str(make(found[1]))

    assert span("10.0.0.0/24") == ("10.0.0.1", "10.0.0.254")
    assert span("10.0.0.0/30") == ("10.0.0.1", "10.0.0.2")
    assert span("10.0.0.0/31") == ("10.0.0.0", "10.0.0.1")  # RFC 3021: both usable
    assert span("10.0.0.7/32") == ("10.0.0.7", "10.0.0.7")
    assert span("2001:db8::/64") == ("2001:db8::1", "2001:db8::ffff:ffff:ffff:ffff")
    assert span("2001:db8::/127") == ("2001:db8::", "2001:db8::1")  # RFC 6164
