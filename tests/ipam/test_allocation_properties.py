"""Property tests: whatever happens to a subnet, allocation never hands out a used or
forbidden address, picks what MAAS would pick, and free plus used equals total.

Each example drives a real ipam (bus, database) through a random sequence of operations
on a fresh small subnet, and checks it step by step against a brute-force model that
enumerates every address.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalbus.shared.contract import ipam as c
from metalbus.shared.errors import AddressExhausted, MetalbusError
from tests.ipam.conftest import IpamUnderTest

_subnet_numbers = itertools.count(1)


@dataclass
class Model:
    """Every address of the subnet, and the rules, the slow and obvious way."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    managed: bool = True
    gateway: int | None = None
    ranges: dict[int, tuple[int, int, str]] = field(default_factory=dict)
    used: dict[int, int] = field(default_factory=dict)  # address -> address id

    @property
    def usable(self) -> list[int]:
        first, last = int(self.network.network_address), int(self.network.broadcast_address)
        if self.network.version == 4 and self.network.prefixlen < 31:
            return list(range(first + 1, last))
        if self.network.version == 6 and self.network.prefixlen < 127:
            return list(range(first + 1, last + 1))
        return list(range(first, last + 1))

    def range_of(self, value: int) -> str | None:
        return next((t for s, e, t in self.ranges.values() if s <= value <= e), None)

    def free(self) -> list[int]:
        out = []
        for value in self.usable:
            kind = self.range_of(value)
            allowed = kind is None if self.managed else kind == "reserved"
            if allowed and value != self.gateway and value not in self.used:
                out.append(value)
        return out

    def runs(self) -> list[tuple[int, int]]:
        runs: list[tuple[int, int]] = []
        for value in self.free():
            if runs and runs[-1][1] == value - 1:
                runs[-1] = (runs[-1][0], value)
            else:
                runs.append((value, value))
        return runs

    def next_free(self) -> int | None:
        runs = self.runs()
        if not runs:
            return None
        return min(runs, key=lambda r: (r[1] - r[0], r[0]))[0]

    def text(self, value: int) -> str:
        return str(ipaddress.ip_address(value))


operations = st.lists(
    st.one_of(
        st.tuples(st.just("next")),
        st.tuples(st.just("given"), st.integers(-1, 70)),
        st.tuples(st.just("release"), st.integers(0, 100)),
        st.tuples(
            st.just("range"),
            st.integers(-1, 66),
            st.integers(0, 12),
            st.sampled_from(["dynamic", "reserved"]),
        ),
        st.tuples(st.just("delete_range"), st.integers(0, 100)),
        st.tuples(st.just("gateway"), st.one_of(st.none(), st.integers(-1, 66))),
        st.tuples(st.just("managed"), st.booleans()),
    ),
    min_size=1,
    max_size=25,
)


async def _succeeds(call) -> tuple[bool, object]:  # type: ignore[no-untyped-def]
    try:
        return True, await call
    except MetalbusError as exc:
        return False, exc


async def _check_pool(ipam: IpamUnderTest, model: Model, subnet_id: int) -> None:
    stats = await ipam.call(c.SUBNET_STATISTICS, id=subnet_id, free_block_limit=10000)
    got = [
        (int(ipaddress.ip_address(b.start)), int(ipaddress.ip_address(b.end)))
        for b in stats.free_blocks
    ]
    assert got == model.runs()
    assert stats.available == len(model.free())
    assert stats.used + stats.available == stats.total == len(model.usable)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, prefix=st.sampled_from([26, 27, 28, 29, 30, 31, 32, 122]))
async def test_allocation_matches_the_brute_force_model(
    ipam: IpamUnderTest, ops: list[tuple], prefix: int
) -> None:
    n = next(_subnet_numbers)
    cidr = f"2001:db8:{n:x}::/{prefix}" if prefix > 32 else f"10.{n // 256}.{n % 256}.0/{prefix}"
    subnet = await ipam.call(c.SUBNET_CREATE, cidr=cidr)
    model = Model(ipaddress.ip_network(cidr))
    base = int(model.network.network_address)
    for op in ops:
        kind = op[0]
        if kind == "next":
            expected = model.next_free()
            ok, result = await _succeeds(ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id))
            if expected is None:
                assert isinstance(result, AddressExhausted)
            else:
                assert ok, result
                assert result.ip == model.text(expected)
                model.used[expected] = result.id
        elif kind == "given":
            value = base + op[1]
            allowed = (
                value in model.usable
                and value not in model.used
                and model.range_of(value) != "dynamic"
                and value != model.gateway
            )
            ok, result = await _succeeds(
                ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id, ip=model.text(value))
            )
            assert ok == allowed, result
            if ok:
                model.used[value] = result.id
        elif kind == "release" and model.used:
            value = sorted(model.used)[op[1] % len(model.used)]
            released = await ipam.call(c.ADDRESS_RELEASE, id=model.used.pop(value))
            assert released.ip == model.text(value)
        elif kind == "range":
            first, last = base + op[1], base + op[1] + op[2]
            allowed = (
                first in model.usable
                and last in model.usable
                and not any(s <= last and e >= first for s, e, _ in model.ranges.values())
                and not (model.gateway is not None and first <= model.gateway <= last)
                and not (op[3] == "dynamic" and not model.managed)
                and not (op[3] == "dynamic" and any(first <= u <= last for u in model.used))
            )
            ok, result = await _succeeds(
                ipam.call(
                    c.RANGE_CREATE,
                    subnet_id=subnet.id,
                    type=op[3],
                    start_ip=model.text(first),
                    end_ip=model.text(last),
                )
            )
            assert ok == allowed, result
            if ok:
                model.ranges[result.id] = (first, last, op[3])
        elif kind == "delete_range" and model.ranges:
            range_id = sorted(model.ranges)[op[1] % len(model.ranges)]
            await ipam.call(c.RANGE_DELETE, id=range_id)
            del model.ranges[range_id]
        elif kind == "gateway":
            value = None if op[1] is None else base + op[1]
            allowed = value is None or (
                value in model.usable and model.range_of(value) is None and value not in model.used
            )
            ok, result = await _succeeds(
                ipam.call(
                    c.SUBNET_UPDATE,
                    id=subnet.id,
                    changes=c.SubnetUpdate(gateway_ip=None if value is None else model.text(value)),
                )
            )
            assert ok == allowed, result
            if ok:
                model.gateway = value
        elif kind == "managed":
            allowed = op[1] or not any(t == "dynamic" for _, _, t in model.ranges.values())
            ok, result = await _succeeds(
                ipam.call(c.SUBNET_UPDATE, id=subnet.id, changes=c.SubnetUpdate(managed=op[1]))
            )
            assert ok == allowed, result
            if ok:
                model.managed = op[1]
        await _check_pool(ipam, model, subnet.id)
    listed = await ipam.call(c.ADDRESS_LIST, subnet_id=subnet.id, limit=1000)
    assert sorted(int(ipaddress.ip_address(a.ip)) for a in listed.items) == sorted(model.used)
