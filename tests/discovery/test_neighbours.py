"""The neighbour table: decisions in memory, batched writes that survive a failed write."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from metalbus.discovery.frames import Sighting
from metalbus.discovery.neighbours import NeighbourTable
from metalbus.discovery.service import MIGRATIONS
from metalbus.shared.db import Database
from tests.conftest import DatabaseFactory
from tests.helpers import async_wait_for

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
A = Sighting("10.0.0.5", "52:54:00:00:00:05", None, "arp_reply")


def table(db: Database | None, refresh: float = 60) -> NeighbourTable:
    return NeighbourTable(
        db,  # type: ignore[arg-type]
        "replica-1",
        refresh_interval_s=refresh,
        flush_interval_s=1,
        flush_batch=100,
    )


def pending_types(t: NeighbourTable) -> list[str]:
    return [e.data.event_name for e in t._events]


def test_new_refreshed_at_most_once_per_interval_and_moved() -> None:
    t = table(None, refresh=60)
    t.observe("eth0", A, T0)
    t.observe("eth0", A, T0 + timedelta(seconds=30))  # throttled: counted, no event
    t.observe("eth0", A, T0 + timedelta(seconds=61))
    t.observe("eth0", A, T0 + timedelta(seconds=62))
    moved = Sighting(A.ip, "52:54:00:00:00:06", None, "arp_reply")
    t.observe("eth0", moved, T0 + timedelta(seconds=70))
    t.observe("eth1", A, T0 + timedelta(seconds=71))  # another interface: another neighbour
    tagged = Sighting(A.ip, A.mac, 42, "arp_reply")
    t.observe("eth0", tagged, T0 + timedelta(seconds=72))  # another VLAN: another neighbour
    assert pending_types(t) == ["new", "refreshed", "moved", "new", "new"]
    entry = t.entries[("eth0", 0, A.ip)]
    assert (entry.mac, entry.count, entry.first_seen) == (moved.mac, 1, T0 + timedelta(seconds=70))
    assert t.entries[("eth0", 42, A.ip)].count == 1 and t.pending == 3


async def test_a_failed_write_keeps_rows_and_events_for_the_next(
    db_factory: DatabaseFactory,
) -> None:
    url, schema = db_factory()
    db = Database(url, schema=schema)
    try:
        await db.migrate([MIGRATIONS])
        t = table(db)
        t.observe("eth0", A, T0)
        t.observe("eth0", A, T0 + timedelta(seconds=5))
        async with db.engine.begin() as conn:  # the table is away: the write must fail
            await conn.execute(text("ALTER TABLE discovery_neighbour RENAME TO away"))
        with pytest.raises(Exception):  # noqa: B017 (the driver's own error type)
            await t.flush()
        assert t.pending == 1 and pending_types(t) == ["new"]
        async with db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE away RENAME TO discovery_neighbour"))
        assert await t.flush() == 1
        assert t.pending == 0 and t._events == []
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT ip, mac, count FROM discovery_neighbour"))
            ).all()
            bodies = (await conn.execute(text("SELECT body FROM metalbus_outbox"))).all()
        assert [tuple(r) for r in rows] == [(A.ip, A.mac, 2)]
        assert [json.loads(b[0])["data"]["ip"] for b in bodies] == [A.ip]
        # A restart reads it back: the same sighting is no news.
        again = table(db)
        assert await again.load() == 1
        again.observe("eth0", A, T0 + timedelta(seconds=10))
        assert pending_types(again) == [] and again.entries[("eth0", 0, A.ip)].count == 3
    finally:
        await db.dispose()


async def test_a_write_still_under_way_when_cancelled_is_neither_lost_nor_repeated(
    db_factory: DatabaseFactory,
) -> None:
    """The stop cancels the writer mid-write: the batch that commits after all must not be
    kept for the next write (its events would be staged twice, and every write fail)."""
    url, schema = db_factory()
    db = Database(url, schema=schema)
    try:
        await db.migrate([MIGRATIONS])
        t = table(db)
        t.observe("eth0", A, T0)
        # Another transaction holds what the write needs (SQLite: the write lock;
        # PostgreSQL: the same key, not committed yet), so the write waits on it.
        async with db.engine.connect() as other:
            blocking = await other.begin()
            await other.execute(
                text(
                    "INSERT INTO discovery_neighbour (ip, mac, vid, interface, observer, "
                    "first_seen, last_seen, count) VALUES (:ip, :mac, 0, 'eth0', 'x', :t, :t, 1)"
                ),
                {"ip": A.ip, "mac": A.mac, "t": T0},
            )
            flushing = asyncio.create_task(t.flush())
            await async_wait_for(lambda: t.pending == 0, 10, "the batch to be taken")
            flushing.cancel()
            await asyncio.sleep(0)  # one turn of the loop: the cancellation lands in the flush
            await blocking.rollback()
        with pytest.raises(asyncio.CancelledError):
            await flushing
        assert t.pending == 0 and t._events == []  # written: nothing kept to write again
        B = Sighting("10.0.0.6", "52:54:00:00:00:06", None, "arp_reply")
        t.observe("eth0", B, T0)
        assert await t.flush() == 1  # the next write goes through
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT ip FROM discovery_neighbour"))).all()
            bodies = (await conn.execute(text("SELECT body FROM metalbus_outbox"))).all()
        assert sorted(r[0] for r in rows) == [A.ip, B.ip]
        assert sorted(json.loads(b[0])["data"]["ip"] for b in bodies) == [A.ip, B.ip]
    finally:
        await db.dispose()
