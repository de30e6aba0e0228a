"""Concurrent allocation: never one address twice, and exactly the right number of clean
"exhausted" answers, on SQLite (one writer at a time) and with two replicas on PostgreSQL."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from metalbus.shared import subjects
from metalbus.shared.bus import Bus
from metalbus.shared.commands import Empty, ping
from metalbus.shared.contract import ipam as c
from metalbus.shared.errors import AddressExhausted
from tests.conftest import _postgres_reachable, skip_or_fail
from tests.helpers import NatsServer, async_wait_for, postgres_url
from tests.ipam.conftest import IpamUnderTest

REPO = Path(__file__).resolve().parents[2]
FREE_IN_A_24 = 253  # 254 usable addresses minus the gateway


async def allocate_many(bus: Bus, subnet_id: int, count: int) -> tuple[list[str], int]:
    """``count`` allocations at once; returns the addresses and how many were 'exhausted'."""

    async def one(i: int) -> str:
        request = c.AllocateAddress(subnet_id=subnet_id, owner_id=f"m{i}")
        return (await bus.request(c.ADDRESS_ALLOCATE, request, timeout=120)).ip

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    addresses = [r for r in results if isinstance(r, str)]
    exhausted = [r for r in results if isinstance(r, AddressExhausted)]
    others = [r for r in results if not isinstance(r, str | AddressExhausted)]
    assert others == [], others[:3]
    return addresses, len(exhausted)


async def events_on(bus: Bus, subject: str) -> int:
    info = await bus.js.stream_info(subjects.stream_name("ipam"), subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))


async def test_concurrent_allocations_in_one_replica(ipam: IpamUnderTest) -> None:
    subnet = await ipam.call(c.SUBNET_CREATE, cidr="10.20.0.0/24", gateway_ip="10.20.0.1")
    addresses, exhausted = await allocate_many(ipam.bus, subnet.id, 400)
    assert len(addresses) == len(set(addresses)) == FREE_IN_A_24
    assert exhausted == 400 - FREE_IN_A_24
    network = ipaddress.ip_network("10.20.0.0/24")
    assert all(ipaddress.ip_address(a) in network for a in addresses)
    assert "10.20.0.1" not in addresses and "10.20.0.0" not in addresses
    stats = await ipam.call(c.SUBNET_STATISTICS, id=subnet.id)
    assert (stats.available, stats.used) == (0, 254)
    allocated = subjects.event_subject("ipam", "address", "allocated")

    async def all_events() -> bool:
        return await events_on(ipam.bus, allocated) == FREE_IN_A_24

    await async_wait_for(all_events, 20, "one allocated event per address")
    exhausted_subject = subjects.event_subject("ipam", "subnet", "exhausted")
    assert await async_wait_for(lambda: events_on(ipam.bus, exhausted_subject), 20, "exhausted")


class IpamReplicas:
    """ipam replicas as real processes on one PostgreSQL schema."""

    def __init__(self, nats_url: str, schema: str, tmp: Path) -> None:
        self.nats_url, self.schema, self.tmp = nats_url, schema, tmp
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, instance: str) -> None:
        env = {
            **os.environ,
            "METALBUS_IPAM_NATS_URL": self.nats_url,
            "METALBUS_IPAM_DATABASE_URL": postgres_url(),
            "METALBUS_IPAM_DATABASE_SCHEMA": self.schema,
            "METALBUS_IPAM_HEALTH_PORT": "0",
            "METALBUS_IPAM_INSTANCE_ID": instance,
        }
        log = (self.tmp / f"{instance}.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "metalbus.ipam"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
async def replicas(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[IpamReplicas]:
    if not await _postgres_reachable():
        skip_or_fail(f"PostgreSQL not reachable at {postgres_url()}")
    group = IpamReplicas(nats_server.url, f"t_{uuid.uuid4().hex[:12]}", tmp_path)
    try:
        yield group
    finally:
        group.stop()
        conn = await asyncpg.connect(postgres_url())
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{group.schema}" CASCADE')
        finally:
            await conn.close()


async def served_by(bus: Bus) -> dict[str, int]:
    """Allocation requests each replica served, from nats.micro's $SRV.STATS."""
    name = subjects.queue_group("ipam")
    replies: list[dict[str, object]] = []
    inbox = bus.nc.new_inbox()

    async def collect(msg) -> None:  # type: ignore[no-untyped-def]
        replies.append(json.loads(msg.data))

    sub = await bus.nc.subscribe(inbox, cb=collect)
    try:
        await bus.nc.publish(f"$SRV.STATS.{name}", b"", reply=inbox)
        await async_wait_for(lambda: len(replies) >= 2, 10, "stats from both replicas")
    finally:
        await sub.unsubscribe()
    out = {}
    for reply in replies:
        endpoints = {e["subject"]: e for e in reply["endpoints"]}  # type: ignore[union-attr]
        out[str(reply["metadata"]["instance"])] = int(  # type: ignore[index]
            endpoints[c.ADDRESS_ALLOCATE.subject]["num_requests"]
        )
    return out


@pytest.mark.postgres
async def test_two_replicas_on_postgresql_never_hand_out_an_address_twice(
    nats_server: NatsServer, replicas: IpamReplicas
) -> None:
    replicas.start("ipam-a")
    replicas.start("ipam-b")
    bus = await Bus.connect(nats_server.url, service="tests")
    try:
        seen: set[str] = set()

        async def both_up() -> bool:
            try:
                seen.add((await bus.request(ping("ipam"), Empty())).instance)
            except Exception:
                return False
            return seen >= {"ipam-a", "ipam-b"}

        await async_wait_for(both_up, 60, "both ipam replicas to answer")
        subnet = await bus.request(
            c.SUBNET_CREATE, c.SubnetCreate(cidr="10.30.0.0/24", gateway_ip="10.30.0.1")
        )
        addresses, exhausted = await allocate_many(bus, subnet.id, 1000)
        assert len(addresses) == len(set(addresses)) == FREE_IN_A_24
        assert exhausted == 1000 - FREE_IN_A_24
        counts = await served_by(bus)
        assert set(counts) == {"ipam-a", "ipam-b"}
        assert all(n > 0 for n in counts.values()), counts
        assert sum(counts.values()) == 1000
        listed = await bus.request(
            c.ADDRESS_LIST, c.IpAddressQuery(subnet_id=subnet.id, limit=1000)
        )
        assert sorted(a.ip for a in listed.items) == sorted(addresses)
        allocated = subjects.event_subject("ipam", "address", "allocated")

        async def all_events() -> bool:
            return await events_on(bus, allocated) == FREE_IN_A_24

        await async_wait_for(all_events, 30, "one allocated event per address, no more")
    finally:
        await bus.close()
