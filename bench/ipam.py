"""IPAM benchmark: next-free allocation on big, busy subnets, beside a NetBox-style baseline.

Scenarios (fixed random seed): an IPv4 /24 with ~100 used addresses, a /16 with 1k and with
10k, a /8 with 100k, and an IPv6 /64 with 1k and with 10k; each subnet also has a gateway and
a few dynamic and reserved ranges. The used addresses are scattered uniformly over what is
left of the subnet.

Seeding writes the used addresses straight into the ipam database in bulk, then rebuilds
the subnet's free blocks with the service's own code (``refresh_pool`` over the whole usable
span), and checks them against free spans worked out here with plain interval arithmetic.
Subnets and ranges are made by the service's own command handlers.

Then, for each scenario:

- **direct**: ``Allocator.allocate`` called in-process, no bus: one write transaction (subnet
  lock, smallest free block, block update, address row, outbox event, commit) on SQLite.
- **bus**: the same request as ``bus.request(ADDRESS_ALLOCATE)`` from a client bus to an ipam
  ``ServiceRuntime`` on a real nats-server (with its outbox relay publishing the events).
- **baseline**: what NetBox's ``get_first_available_ip`` does on the same data, in memory:
  ``IPSet(prefix) - IPSet(used) - IPSet(ranges) - IPSet(network/broadcast)``, first
  element; each answer is added to the used list, as saving it would. Time-boxed: it takes
  seconds per allocation on the big subnets.

Every address metalbus or the baseline hands out is checked: free in the seeded data, and
not already handed out. It is a report, not a test: it exits 0 whether the target (on the
/8: p99 under 2 ms, and at least 100x faster than the baseline) is met or not, and 1 only
when the set-up fails or an answer is wrong.

Run: ``make bench-ipam`` or ``.venv/bin/python bench/ipam.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import ipaddress
import logging
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import netaddr
from foundation import HELPER_DEADLINE_S, POLL_S, VENV_BIN, SetupError, percentile, start_process
from reports import positive, save_report  # bench/ is the script's directory: on sys.path
from sqlalchemy import delete, insert
from sqlmodel import col, select

from metalbus.cli.up import free_port, port_open, wait_until
from metalbus.ipam.addresses import Allocator
from metalbus.ipam.models import FreeBlockRow, IpAddressRow, SubnetRow
from metalbus.ipam.service import DEFINITION as IPAM
from metalbus.ipam.settings import IpamSettings
from metalbus.ipam.spans import address_key, from_key
from metalbus.ipam.store import lock_subnet
from metalbus.ipam.subnets import create_range, create_subnet, refresh_pool
from metalbus.ipam.topology import create_fabric
from metalbus.shared.bus import Bus
from metalbus.shared.contract.ipam import (
    ADDRESS_ALLOCATE,
    AddressType,
    AllocateAddress,
    FabricCreate,
    IpAddress,
    IpRangeCreate,
    IpRangeType,
    OwnerType,
    SubnetCreate,
)
from metalbus.shared.db import Database
from metalbus.shared.messaging import OutboxMessage
from metalbus.shared.runtime import ServiceRuntime

BENCH_DIR = Path(__file__).resolve().parent
TARGET_KEY = "v4-8"
TARGET_P99_MS = 2.0
TARGET_FACTOR = 100.0
INSERT_CHUNK = 5000
Span = tuple[int, int]


class WrongAnswer(Exception):
    """An allocator handed out an address that was not free (the benchmark stops)."""


# -- scenarios ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One subnet to seed and allocate from."""

    key: str
    label: str
    cidr: str
    used: int
    gateway: str
    ranges: tuple[tuple[IpRangeType, str, str], ...]


DYNAMIC, RESERVED = IpRangeType.DYNAMIC, IpRangeType.RESERVED
SCENARIOS = (
    Scenario(
        "v4-24",
        "IPv4 /24",
        "192.168.10.0/24",
        100,
        "192.168.10.1",
        (
            (DYNAMIC, "192.168.10.200", "192.168.10.239"),
            (RESERVED, "192.168.10.240", "192.168.10.254"),
        ),
    ),
    Scenario(
        "v4-16-1k",
        "IPv4 /16",
        "172.16.0.0/16",
        1_000,
        "172.16.0.1",
        (
            (RESERVED, "172.16.0.2", "172.16.0.31"),
            (RESERVED, "172.16.100.0", "172.16.100.255"),
            (DYNAMIC, "172.16.200.0", "172.16.203.255"),
        ),
    ),
    Scenario(
        "v4-16-10k",
        "IPv4 /16",
        "172.17.0.0/16",
        10_000,
        "172.17.0.1",
        (
            (RESERVED, "172.17.0.2", "172.17.0.31"),
            (RESERVED, "172.17.100.0", "172.17.100.255"),
            (DYNAMIC, "172.17.200.0", "172.17.203.255"),
        ),
    ),
    Scenario(
        "v4-8",
        "IPv4 /8",
        "10.0.0.0/8",
        100_000,
        "10.0.0.1",
        (
            (RESERVED, "10.0.0.2", "10.0.0.255"),
            (RESERVED, "10.100.0.0", "10.100.15.255"),
            (DYNAMIC, "10.200.0.0", "10.200.255.255"),
            (RESERVED, "10.255.255.0", "10.255.255.254"),
        ),
    ),
    Scenario(
        "v6-64-1k",
        "IPv6 /64",
        "2001:db8:0:1::/64",
        1_000,
        "2001:db8:0:1::1",
        (
            (RESERVED, "2001:db8:0:1::2", "2001:db8:0:1::ff"),
            (DYNAMIC, "2001:db8:0:1::1:0", "2001:db8:0:1::1:ffff"),
            (RESERVED, "2001:db8:0:1:8000::", "2001:db8:0:1:8000::ffff"),
        ),
    ),
    Scenario(
        "v6-64-10k",
        "IPv6 /64",
        "2001:db8:0:2::/64",
        10_000,
        "2001:db8:0:2::1",
        (
            (RESERVED, "2001:db8:0:2::2", "2001:db8:0:2::ff"),
            (DYNAMIC, "2001:db8:0:2::1:0", "2001:db8:0:2::1:ffff"),
            (RESERVED, "2001:db8:0:2:8000::", "2001:db8:0:2:8000::ffff"),
        ),
    ),
)


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, disjoint spans covering the same addresses (adjacent ones joined)."""
    out: list[Span] = []
    for first, last in sorted(spans):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(last, out[-1][1]))
        else:
            out.append((first, last))
    return out


def complement(taken: list[Span], window: Span) -> list[Span]:
    """The parts of ``window`` outside ``taken`` (merged spans)."""
    out: list[Span] = []
    cursor = window[0]
    for first, last in taken:
        if last < cursor:
            continue
        if first > window[1]:
            break
        if first > cursor:
            out.append((cursor, first - 1))
        cursor = last + 1
    if cursor <= window[1]:
        out.append((cursor, window[1]))
    return out


def in_spans(starts: list[int], spans: list[Span], value: int) -> bool:
    """Whether ``value`` is in one of the sorted, disjoint ``spans`` (``starts``: their firsts)."""
    index = bisect.bisect_right(starts, value) - 1
    return index >= 0 and spans[index][0] <= value <= spans[index][1]


@dataclass
class Seeded:
    """A seeded subnet and what the benchmark knows about it independently of metalbus."""

    scenario: Scenario
    subnet_id: int
    version: int
    usable: Span
    used: list[int]
    excluded: list[Span]  # ranges and gateway, merged
    free: list[Span]  # usable minus excluded minus used: what next-free may hand out
    free_starts: list[int]
    total: int
    available: int
    seed_s: float
    free_blocks: int

    def is_free(self, value: int) -> bool:
        """Whether the address was free in the seeded data."""
        return in_spans(self.free_starts, self.free, value)


def draw_used(scenario: Scenario, usable: Span, excluded: list[Span], seed: int) -> list[int]:
    """``scenario.used`` distinct addresses, uniform over ``usable`` minus ``excluded``."""
    rng = random.Random(f"{seed}/{scenario.key}")
    starts = [s for s, _ in excluded]
    chosen: set[int] = set()
    while len(chosen) < scenario.used:
        value = rng.randint(*usable)
        if not in_spans(starts, excluded, value):
            chosen.add(value)
    return sorted(chosen)


async def seed(
    db: Database, settings: IpamSettings, vlan_id: int, scenario: Scenario, seed_value: int
) -> Seeded:
    """Make the subnet and its ranges (service code), add the used addresses in bulk, rebuild
    the free blocks (service code) and check them against the interval arithmetic here.

    Raises:
        SetupError: the free blocks or ``available`` are not what they should be.
    """
    started = time.perf_counter()
    network = ipaddress.ip_network(scenario.cidr)
    subnet = await create_subnet(
        db, settings, SubnetCreate(cidr=scenario.cidr, vlan_id=vlan_id, gateway_ip=scenario.gateway)
    )
    for kind, start, end in scenario.ranges:
        await create_range(
            db,
            settings,
            IpRangeCreate(subnet_id=subnet.id, type=kind, start_ip=start, end_ip=end),
        )
    # The usable span, worked out here rather than with metalbus' usable_span().
    first, last = int(network.network_address), int(network.broadcast_address)
    usable = (first + 1, last - 1) if network.version == 4 else (first + 1, last)
    gateway = int(ipaddress.ip_address(scenario.gateway))
    excluded = merge(
        [(gateway, gateway)]
        + [
            (int(ipaddress.ip_address(s)), int(ipaddress.ip_address(e)))
            for _, s, e in scenario.ranges
        ]
    )
    used = draw_used(scenario, usable, excluded, seed_value)

    now = datetime.now(UTC)
    kinds = (AddressType.STICKY.value, AddressType.AUTO.value, AddressType.USER_RESERVED.value)
    rows = [
        {
            "subnet_id": subnet.id,
            "ip": str(ipaddress.ip_address(value)),
            "ip_key": address_key(value),
            "alloc_type": kinds[index % len(kinds)],
            "owner_type": OwnerType.MACHINE.value,
            "owner_id": f"seed-{index}",
            "hostname": None,
            "mac": None,
            "lease_expires_at": None,
            "created_at": now,
            "updated_at": now,
        }
        for index, value in enumerate(used)
    ]
    async with db.transaction() as session:
        for index in range(0, len(rows), INSERT_CHUNK):
            await session.exec(insert(IpAddressRow), params=rows[index : index + INSERT_CHUNK])
        locked = await lock_subnet(session, subnet.id)
        await refresh_pool(session, locked, [usable], settings)
    seed_s = time.perf_counter() - started

    total = usable[1] - usable[0] + 1
    excluded_size = sum(e - s + 1 for s, e in clip(excluded, usable))
    expected_available = total - len(used) - excluded_size
    free = complement(merge([*excluded, *((u, u) for u in used)]), usable)
    if sum(e - s + 1 for s, e in free) != expected_available:
        raise SetupError(f"{scenario.key}: the benchmark's own interval arithmetic disagrees")
    async with db.read() as session:
        row = await session.get(SubnetRow, subnet.id)
        available = int(row.available) if row is not None else -1
        blocks = [
            (from_key(s), from_key(e))
            for s, e in (
                await session.exec(
                    select(FreeBlockRow.start_key, FreeBlockRow.end_key)
                    .where(FreeBlockRow.subnet_id == subnet.id)
                    .order_by(col(FreeBlockRow.start_key))
                )
            ).all()
        ]
    if available != expected_available:
        raise SetupError(
            f"{scenario.key}: available is {available}, expected {expected_available} "
            f"(total {total} - used {len(used)} - excluded {excluded_size})"
        )
    if blocks != free:
        raise SetupError(f"{scenario.key}: the free blocks differ from usable - excluded - used")
    return Seeded(
        scenario=scenario,
        subnet_id=subnet.id,
        version=network.version,
        usable=usable,
        used=used,
        excluded=excluded,
        free=free,
        free_starts=[s for s, _ in free],
        total=total,
        available=available,
        seed_s=seed_s,
        free_blocks=len(blocks),
    )


def clip(spans: list[Span], window: Span) -> list[Span]:
    """The parts of merged ``spans`` inside ``window``."""
    lo, hi = window
    return [(max(s, lo), min(e, hi)) for s, e in spans if e >= lo and s <= hi]


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Phase:
    """The timings of one way of allocating on one scenario."""

    samples: list[float] = field(default_factory=list)
    cpu_s: float = 0.0  # CPU time of the whole process (every thread) over the timed samples
    handed_out: int = 0  # addresses checked, warm-up included
    resets: int = 0
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Milliseconds, for the table and the JSON file."""
        return {
            "n": len(self.samples),
            "p50_ms": percentile(self.samples, 50) * 1e3,
            "p99_ms": percentile(self.samples, 99) * 1e3,
            "p90_ms": percentile(self.samples, 90) * 1e3,
            "mean_ms": sum(self.samples) / len(self.samples) * 1e3 if self.samples else 0.0,
            "max_ms": max(self.samples) * 1e3 if self.samples else 0.0,
            "cpu_ms_per_op": self.cpu_s / len(self.samples) * 1e3 if self.samples else 0.0,
            "handed_out": self.handed_out,
            "resets": self.resets,
            "wall_s": self.wall_s,
        }


class Ledger:
    """What one allocator holds of a subnet; refuses an address that was not free.

    Holding as many as the subnet had free calls ``reset`` (untimed), which gives them all
    back, so a small subnet can serve any number of allocations.
    """

    def __init__(self, seeded: Seeded, who: str) -> None:
        self.seeded = seeded
        self.who = who
        self.held: set[int] = set()
        self.ids: list[int] = []

    def _text(self, value: int) -> str:
        return str(
            ipaddress.ip_address(value)
            if self.seeded.version == 4
            else ipaddress.IPv6Address(value)
        )

    @property
    def full(self) -> bool:
        """Whether nothing that was free is left."""
        return len(self.held) >= self.seeded.available

    def take(self, value: int, address_id: int | None = None) -> None:
        """Record an address handed out.

        Raises:
            WrongAnswer: it was not free in the seeded data, or is handed out already.
        """
        if not self.seeded.is_free(value):
            raise WrongAnswer(f"{self.who} handed out {self._text(value)}, which was not free")
        if value in self.held:
            raise WrongAnswer(f"{self.who} handed out {self._text(value)} twice")
        self.held.add(value)
        if address_id is not None:
            self.ids.append(address_id)


async def give_back(db: Database, settings: IpamSettings, ledger: Ledger) -> None:
    """Delete what the benchmark allocated and rebuild the free blocks (service code); the
    subnet must then be as seeded."""
    seeded = ledger.seeded
    async with db.transaction() as session:
        for index in range(0, len(ledger.ids), 500):
            chunk = ledger.ids[index : index + 500]
            await session.exec(delete(IpAddressRow).where(col(IpAddressRow.id).in_(chunk)))
        subnet = await lock_subnet(session, seeded.subnet_id)
        await refresh_pool(session, subnet, [seeded.usable], settings)
        available = int(subnet.available)
    if available != seeded.available:
        raise WrongAnswer(
            f"{seeded.scenario.key}: after giving back, available is {available}, "
            f"not {seeded.available}"
        )
    ledger.held.clear()
    ledger.ids.clear()


async def clear_outbox(db: Database) -> None:
    """Drop events no relay will publish (the direct phase's), so they do not pile up."""
    async with db.transaction() as session:
        await session.exec(delete(OutboxMessage))


async def measure_metalbus(
    allocate: Callable[[AllocateAddress], Awaitable[IpAddress]],
    ledger: Ledger,
    reset: Callable[[], Awaitable[None]],
    count: int,
    warmup: int,
    tag: str,
) -> Phase:
    """``warmup`` + ``count`` next-free allocations, one at a time; the last ``count`` timed."""
    phase = Phase()
    started = time.perf_counter()
    for index in range(warmup + count):
        if ledger.full:
            await reset()
            phase.resets += 1
        request = AllocateAddress(
            subnet_id=ledger.seeded.subnet_id,
            owner_type=OwnerType.MACHINE,
            owner_id=f"{tag}-{index}",
        )
        cpu = time.process_time()
        t0 = time.perf_counter()
        answer = await allocate(request)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu
        ledger.take(int(ipaddress.ip_address(answer.ip)), answer.id)
        phase.handed_out += 1
        if index >= warmup:
            phase.samples.append(elapsed)
            phase.cpu_s += cpu
    phase.wall_s = time.perf_counter() - started
    return phase


def measure_baseline(seeded: Seeded, box_s: float, minimum: int, maximum: int) -> Phase:
    """NetBox's ``Prefix.get_first_available_ip`` on the seeded data, held in memory.

    The child addresses and ranges are netaddr objects already (NetBox reads them from its
    database as such), so only the set arithmetic and the first element are timed. Runs
    until ``box_s`` has passed and ``minimum`` samples are in, or ``maximum`` are.
    """
    version = seeded.version
    prefix = netaddr.IPNetwork(seeded.scenario.cidr)
    gateway = int(ipaddress.ip_address(seeded.scenario.gateway))
    # A NetBox prefix's child IPs include the gateway (an IPAddress object like any other).
    child_ips = [netaddr.IPAddress(v, version) for v in [gateway, *seeded.used]]
    child_ranges = [
        netaddr.IPRange(s, e) for _, s, e in seeded.scenario.ranges
    ]  # both kinds, as ranges marked utilized
    if version == 4:
        edges = [netaddr.IPAddress(prefix.first, 4), netaddr.IPAddress(prefix.last, 4)]
    else:
        edges = [netaddr.IPAddress(prefix.first, 6)]  # the subnet-router anycast address
    ledger = Ledger(seeded, "the baseline")
    phase = Phase()
    started = time.perf_counter()
    while len(phase.samples) < maximum and (
        len(phase.samples) < minimum or time.perf_counter() - started < box_s
    ):
        if ledger.full:
            del child_ips[len(child_ips) - len(ledger.held) :]
            ledger.held.clear()
            phase.resets += 1
        cpu = time.process_time()
        t0 = time.perf_counter()
        available = netaddr.IPSet([prefix]) - netaddr.IPSet(child_ips)
        ranges = netaddr.IPSet()
        for r in child_ranges:
            ranges.add(r)
        available = available - ranges
        available -= netaddr.IPSet(edges)
        first = next(iter(available)) if available else None
        elapsed = time.perf_counter() - t0
        phase.cpu_s += time.process_time() - cpu
        if first is None:
            raise WrongAnswer("the baseline found no free address")
        ledger.take(int(first))
        child_ips.append(first)
        phase.samples.append(elapsed)
        phase.handed_out += 1
    phase.wall_s = time.perf_counter() - started
    return phase


# -- the run -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything measured on one scenario."""

    seeded: Seeded
    direct: Phase
    bus: Phase
    baseline: Phase


async def drained(runtime: ServiceRuntime, deadline_s: float = 30.0) -> None:
    """Wait until the service's outbox is empty (its relay published everything).

    Raises:
        SetupError: events are still pending after the deadline.
    """
    stop_at = time.monotonic() + deadline_s
    while await runtime.relay.pending():
        if time.monotonic() > stop_at:
            raise SetupError(f"the ipam relay did not publish its events within {deadline_s:g}s")
        await asyncio.sleep(0.05)  # polling with a deadline


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


async def run(args: argparse.Namespace, work_dir: Path, nats_url: str) -> list[Outcome]:
    """Seed and measure every scenario against one database and one running ipam service."""
    database_url = f"sqlite:///{work_dir / 'ipam.db'}"
    settings = IpamSettings(
        nats_url=nats_url,
        database_url=database_url,
        health_port=0,
        # Only the commit hook wakes the relay (the direct phase's events are dropped, not
        # relayed in the middle of the next timings); the hourly lease sweep stays out of it.
        outbox_poll_s=3600,
        lease_sweep_s=3600,
        log_level="WARNING",
    )
    runtime = ServiceRuntime(IPAM, settings)
    print("starting the ipam service (migrations, bus) ...", file=sys.stderr)
    await runtime.start()
    db = Database(database_url)  # the benchmark's own engine: no relay hears its commits
    client = await Bus.connect(nats_url, service="bench")
    outcomes: list[Outcome] = []
    try:
        fabric = await create_fabric(db, FabricCreate(name="bench"))
        allocator = Allocator(db, settings)
        # netaddr's first call imports and builds tables; not the baseline's cost.
        _ = next(iter(netaddr.IPSet(["192.0.2.0/30"]) - netaddr.IPSet(["192.0.2.1"])))
        for scenario in SCENARIOS:
            if args.scenarios and scenario.key not in args.scenarios:
                continue
            print(f"{scenario.key}: seeding {scenario.used} used addresses ...", file=sys.stderr)
            seeded = await seed(db, settings, fabric.default_vlan_id, scenario, args.seed)
            gc.collect()
            gc.freeze()  # the benchmark's own data is not the allocators' garbage to scan

            print(f"{scenario.key}: {args.allocations} allocations, direct ...", file=sys.stderr)
            ledger = Ledger(seeded, "metalbus")

            async def reset(ledger: Ledger = ledger) -> None:
                await give_back(db, settings, ledger)

            direct = await measure_metalbus(
                allocator.allocate, ledger, reset, args.allocations, args.warmup, "direct"
            )
            await clear_outbox(db)

            print(f"{scenario.key}: {args.bus_allocations} allocations, bus ...", file=sys.stderr)

            async def over_bus(request: AllocateAddress) -> IpAddress:
                return await client.request(ADDRESS_ALLOCATE, request)

            bus = await measure_metalbus(
                over_bus, ledger, reset, args.bus_allocations, args.warmup, "bus"
            )

            # The baseline holds the event loop for seconds at a time: let the service's
            # relay publish the bus phase's events first, or their acknowledgements time out.
            await drained(runtime)
            print(
                f"{scenario.key}: baseline (up to {args.baseline_seconds:g} s) ...",
                file=sys.stderr,
            )
            baseline = measure_baseline(
                seeded, args.baseline_seconds, args.baseline_min, args.baseline_max
            )
            gc.collect()
            outcomes.append(Outcome(seeded, direct, bus, baseline))
    finally:
        # Closing the buses logs "disconnected from NATS" as a warning; that is expected here.
        logging.getLogger("metalbus.shared.bus").setLevel(logging.ERROR)
        await client.close()
        await db.dispose()
        await runtime.stop()
    return outcomes


# -- reporting ---------------------------------------------------------------------------


def build_report(args: argparse.Namespace, outcomes: list[Outcome]) -> dict[str, Any]:
    """Everything the run found, as plain data (printed, and saved as JSON)."""
    scenarios: dict[str, Any] = {}
    for o in outcomes:
        s = o.seeded
        direct, bus, baseline = o.direct.summary(), o.bus.summary(), o.baseline.summary()
        scenarios[s.scenario.key] = {
            "label": s.scenario.label,
            "cidr": s.scenario.cidr,
            "used": len(s.used),
            "ranges": [
                {"type": kind.value, "start": start, "end": end}
                for kind, start, end in s.scenario.ranges
            ],
            "excluded_addresses": sum(e - st + 1 for st, e in s.excluded),
            "total": s.total,
            "available": s.available,
            "free_blocks": s.free_blocks,
            "seed_s": s.seed_s,
            "direct": direct,
            "bus": bus,
            "baseline": baseline,
            "ratios": {
                "baseline_over_direct_p50": _ratio(baseline["p50_ms"], direct["p50_ms"]),
                "baseline_over_direct_p99": _ratio(baseline["p99_ms"], direct["p99_ms"]),
                "baseline_over_bus_p50": _ratio(baseline["p50_ms"], bus["p50_ms"]),
                "baseline_over_bus_p99": _ratio(baseline["p99_ms"], bus["p99_ms"]),
            },
        }
    target: dict[str, Any] = {
        "rule": f"on the /8: p99 < {TARGET_P99_MS:g} ms and >= {TARGET_FACTOR:g}x faster "
        "than the baseline (p50 and p99)"
    }
    if (t := scenarios.get(TARGET_KEY)) is not None:
        for way in ("direct", "bus"):
            p99 = t[way]["p99_ms"]
            r50, r99 = (
                t["ratios"][f"baseline_over_{way}_p50"],
                t["ratios"][f"baseline_over_{way}_p99"],
            )
            target[way] = {
                "p99_ms": p99,
                "p99_met": p99 < TARGET_P99_MS,
                "ratio_p50": r50,
                "ratio_p99": r99,
                "ratio_met": min(r50, r99) >= TARGET_FACTOR,
            }
    return {
        "benchmark": "ipam",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "netaddr": netaddr.__version__,
            "database": "sqlite (WAL, synchronous=NORMAL)",
            "load_before": list(args.load_before),
            "load_after": list(os.getloadavg()),
        },
        "settings": {
            "quick": args.quick,
            "seed": args.seed,
            "allocations": args.allocations,
            "bus_allocations": args.bus_allocations,
            "warmup": args.warmup,
            "baseline_seconds": args.baseline_seconds,
            "baseline_min": args.baseline_min,
            "baseline_max": args.baseline_max,
        },
        "scenarios": scenarios,
        "target": target,
    }


def _x(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def print_report(report: dict[str, Any]) -> None:
    """The human-readable table, the scenarios and the target."""
    s, mach = report["settings"], report["machine"]
    print()
    print(
        f"metalbus ipam next-free benchmark: {mach['cpus_usable']} CPUs, Python "
        f"{mach['python']}, {mach['database']}, netaddr {mach['netaddr']}, seed {s['seed']}"
    )
    print(
        f"load average (1 min) {mach['load_before'][0]:.2f} before, "
        f"{mach['load_after'][0]:.2f} after: other work on the machine lands in the timings"
    )
    print(
        f"timed allocations per scenario: {s['allocations']} direct, {s['bus_allocations']} over "
        f"the bus, each after {s['warmup']} untimed; baseline: at least {s['baseline_min']}, "
        f"then until {s['baseline_seconds']:g} s (at most {s['baseline_max']})"
    )
    print()
    head = (
        f"{'scenario':<11}{'used':>8}{'free blocks':>12}"
        f"{'direct p50':>12}{'p99':>7}{'cpu':>7}{'bus p50':>10}{'p99':>7}{'cpu':>7}"
        f"{'baseline p50':>14}{'p99':>8}{'n':>5}"
        f"{'base/direct p50':>17}{'p99':>8}{'base/bus p50':>14}{'p99':>8}"
    )
    print(head)
    print("-" * len(head))
    for key, r in report["scenarios"].items():
        d, b, base, q = r["direct"], r["bus"], r["baseline"], r["ratios"]
        print(
            f"{key:<11}{r['used']:>8,}{r['free_blocks']:>12,}"
            f"{_ms(d['p50_ms']):>12}{_ms(d['p99_ms']):>7}{_ms(d['cpu_ms_per_op']):>7}"
            f"{_ms(b['p50_ms']):>10}{_ms(b['p99_ms']):>7}{_ms(b['cpu_ms_per_op']):>7}"
            f"{_ms(base['p50_ms']):>14}{_ms(base['p99_ms']):>8}{base['n']:>5}"
            f"{_x(q['baseline_over_direct_p50']):>17}{_x(q['baseline_over_direct_p99']):>8}"
            f"{_x(q['baseline_over_bus_p50']):>14}{_x(q['baseline_over_bus_p99']):>8}"
        )
    print()
    print(
        "ms throughout; cpu: CPU time of the benchmark process (all threads; over the bus the "
        "service and the client share it) per allocation. n: baseline samples (with few, p99 "
        "is the slowest one)."
    )
    print()
    for key, r in report["scenarios"].items():
        ranges = ", ".join(f"{x['type']} {x['start']}-{x['end']}" for x in r["ranges"])
        print(
            f"  {key:<10} {r['cidr']}: {r['used']:,} used, {r['excluded_addresses']:,} in "
            f"ranges or the gateway, {r['available']:,} free; seeded in {r['seed_s']:.1f} s "
            f"({ranges})"
        )
    target = report["target"]
    print()
    print(f"target: {target['rule']}")
    for way, what in (("direct", "Allocator.allocate in-process"), ("bus", "over the bus")):
        if way not in target:
            print("  (the /8 scenario was not run)")
            break
        t = target[way]
        print(
            f"  {what:<30} p99 {t['p99_ms']:.2f} ms: {'PASS' if t['p99_met'] else 'MISS'};"
            f"  baseline/metalbus {_x(t['ratio_p50'])} (p50), {_x(t['ratio_p99'])} (p99): "
            f"{'PASS' if t['ratio_met'] else 'MISS'}"
        )


# -- entry point -------------------------------------------------------------------------


@contextlib.contextmanager
def nats_server(work_dir: Path) -> Any:
    """A nats-server with JetStream in ``work_dir`` on a free loopback port; yields its URL.

    Raises:
        SetupError: it is missing or does not listen in time.
    """
    binary = VENV_BIN / "nats-server"
    if not binary.exists():
        raise SetupError(f"{binary} is missing: run `make install` and use .venv/bin/python")
    port = free_port()
    logs = work_dir / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    proc = start_process(
        "nats-server",
        [str(binary), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(work_dir / "js")],
        logs,
        capture=False,
    )
    try:
        if not wait_until(
            lambda: port_open("127.0.0.1", port) or not proc.alive(), HELPER_DEADLINE_S, POLL_S
        ):
            raise SetupError(f"nats-server did not listen within {HELPER_DEADLINE_S:g}s")
        if not proc.alive():
            raise SetupError(f"nats-server exited:\n{proc.tail()}")
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.stop(signal.SIGTERM, 10.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The tunables; the defaults keep a run under about five minutes on two cores."""

    parser = argparse.ArgumentParser(
        prog="bench/ipam.py",
        description="Next-free allocation latency of metalbus' ipam on busy IPv4 and IPv6 "
        "subnets, against a NetBox-style netaddr IPSet baseline (a report, not a test).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smaller run (under a minute): 300 + 200 allocations, baseline boxed to 3 s",
    )
    parser.add_argument(
        "--allocations",
        type=positive,
        help="timed in-process allocations per scenario (default 2000; quick 300)",
    )
    parser.add_argument(
        "--bus-allocations",
        type=positive,
        help="timed allocations over the bus per scenario (default 1000; quick 200)",
    )
    parser.add_argument(
        "--warmup", type=int, help="untimed allocations before each way (default 50; quick 20)"
    )
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        help="time box of the baseline per scenario, in seconds (default 15; quick 3)",
    )
    parser.add_argument(
        "--baseline-min",
        type=positive,
        help="baseline samples taken even past the time box (default 3; quick 1)",
    )
    parser.add_argument(
        "--baseline-max",
        type=positive,
        help="baseline samples at most (default 200; quick 50)",
    )
    parser.add_argument("--seed", type=int, default=20240601, help="random seed (default fixed)")
    parser.add_argument(
        "--scenario",
        dest="scenarios",
        action="append",
        choices=[s.key for s in SCENARIOS],
        help="run only this scenario (repeatable; default all)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=BENCH_DIR / "results",
        help="where the JSON report goes (default bench/results)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON report")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (database, nats log)"
    )
    args = parser.parse_args(argv)
    defaults = (
        {
            "allocations": 300,
            "bus_allocations": 200,
            "warmup": 20,
            "baseline_seconds": 3.0,
            "baseline_min": 1,
            "baseline_max": 50,
        }
        if args.quick
        else {
            "allocations": 2000,
            "bus_allocations": 1000,
            "warmup": 50,
            "baseline_seconds": 15.0,
            "baseline_min": 3,
            "baseline_max": 200,
        }
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same way out as Ctrl-C, through the clean-up in main().
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start nats-server, seed, measure, report, stop; returns the exit code."""
    args = parse_args(argv)
    args.load_before = os.getloadavg()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    work_dir = Path(tempfile.mkdtemp(prefix="metalbus-bench-ipam-"))
    stack = contextlib.ExitStack()
    if args.keep:
        stack.callback(print, f"kept {work_dir}", file=sys.stderr)
    else:
        stack.callback(shutil.rmtree, work_dir, ignore_errors=True)
    try:
        started = time.perf_counter()
        nats_url = stack.enter_context(nats_server(work_dir))
        outcomes = asyncio.run(run(args, work_dir, nats_url))
        report = build_report(args, outcomes)
        report["wall_s"] = time.perf_counter() - started
        print_report(report)
        print(f"\nwhole run: {report['wall_s']:.0f} s")
        if not args.no_save:
            print(f"saved {save_report(report, args.results_dir, 'ipam')}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (SetupError, WrongAnswer, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
