"""The neighbour table: decided in memory per frame, written in batches with its events.

A frame's sighting is decided at once against memory (new, seen again, moved to another
MAC) and the entry is marked dirty; events go on a pending list. :meth:`NeighbourTable.run`
writes every dirty entry and every pending event in one short Core transaction
(:meth:`Database.run_transaction`) every ``flush_interval_s``, or as soon as
``flush_batch`` entries wait, so the events reach the outbox with the rows they describe.
A failed write keeps both for the next round.

At start the table is loaded from the database, so a restart does not announce every
neighbour as new again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from metalbus.shared.contract.discovery import (
    MdnsNameSeen,
    NeighbourCleared,
    NeighbourMoved,
    NeighbourNew,
    NeighbourRefreshed,
)
from metalbus.shared.db import Database
from metalbus.shared.events import Event, as_utc, new_event, utcnow
from metalbus.shared.outbox import stage_on

from .frames import NameSighting, Sighting
from .models import MdnsNameRow, NeighbourRow

log = logging.getLogger(__name__)

TABLE = NeighbourRow.__table__  # type: ignore[attr-defined]
NAMES = MdnsNameRow.__table__  # type: ignore[attr-defined]
Key = tuple[str, int, str]  # interface, vid (0: untagged), ip
NameKey = tuple[str, str]  # interface, ip
Listener = Callable[[str, Sighting], None]


@dataclass
class Entry:
    """What memory holds of one neighbour."""

    mac: str
    first_seen: datetime
    last_seen: datetime
    count: int
    last_event_at: datetime


@dataclass
class NameEntry:
    """What memory holds of one mDNS name."""

    hostname: str
    first_seen: datetime
    last_seen: datetime
    count: int


def _upsert(connection: Connection, table: Any, rows: list[dict[str, Any]], key: list[str]) -> None:
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = insert(table)
    changes = [name for name in rows[0] if name not in key]
    statement = statement.on_conflict_do_update(
        index_elements=key, set_={name: statement.excluded[name] for name in changes}
    )
    connection.execute(statement, rows)


def _write(
    connection: Connection,
    rows: list[dict[str, Any]],
    names: list[dict[str, Any]],
    events: list[Event[Any]],
) -> None:
    if rows:
        _upsert(connection, TABLE, rows, ["interface", "vid", "ip"])
    if names:
        _upsert(connection, NAMES, names, ["interface", "ip"])
    for event in events:
        stage_on(connection, event)


def _clear(connection: Connection, mac: str | None, ip: str | None) -> list[tuple[str, str]]:
    """Delete the matching rows and stage one ``neighbour.cleared`` per address and MAC."""
    conditions = []
    if mac is not None:
        conditions.append(TABLE.c.mac == mac)
    if ip is not None:
        conditions.append(TABLE.c.ip == ip)
    where = conditions or [TABLE.c.id.isnot(None)]
    found = connection.execute(select(TABLE.c.ip, TABLE.c.mac).where(*where)).all()
    connection.execute(delete(TABLE).where(*where))
    pairs = sorted({(row.ip, row.mac) for row in found})
    # The names of the cleared addresses go too (all of them when everything is cleared).
    if mac is None and ip is None:
        connection.execute(delete(NAMES))
    elif pairs:
        connection.execute(delete(NAMES).where(NAMES.c.ip.in_({a for a, _ in pairs})))
    for address, owner in pairs:
        stage_on(connection, new_event(NeighbourCleared(ip=address, mac=owner), subject=address))
    return pairs


def _fields(interface: str, sighting: Sighting, now: datetime) -> dict[str, Any]:
    """The fields of a neighbour event about ``sighting``."""
    return {
        "ip": sighting.ip,
        "mac": sighting.mac,
        "interface": interface,
        "vid": sighting.vid,
        "seen_at": now,
    }


class NeighbourTable:
    """Every neighbour this replica knows, and the writer that makes them durable."""

    def __init__(
        self,
        db: Database,
        observer: str,
        *,
        refresh_interval_s: float,
        flush_interval_s: float,
        flush_batch: int,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.observer = observer
        self.refresh_interval_s = refresh_interval_s
        self.flush_interval_s = flush_interval_s
        self.flush_batch = flush_batch
        self.on_event = on_event
        self.entries: dict[Key, Entry] = {}
        self.names: dict[NameKey, NameEntry] = {}
        self._dirty_names: set[NameKey] = set()
        self.listeners: list[Listener] = []
        self._dirty: set[Key] = set()
        self._events: list[Event[Any]] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    async def load(self) -> int:
        """Read every stored neighbour into memory; returns how many."""
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(TABLE))).all()
        for row in rows:
            seen = as_utc(row.last_seen)
            self.entries[(row.interface, row.vid, row.ip)] = Entry(
                row.mac, as_utc(row.first_seen), seen, row._mapping["count"], seen
            )
        async with self.db.engine.connect() as conn:
            names = (await conn.execute(select(NAMES))).all()
        for row in names:
            self.names[(row.interface, row.ip)] = NameEntry(
                row.hostname, as_utc(row.first_seen), as_utc(row.last_seen), row._mapping["count"]
            )
        return len(rows)

    def observe(self, interface: str, sighting: Sighting, now: datetime | None = None) -> None:
        """Decide one sighting against memory (never blocks; called per frame)."""
        now = now or utcnow()
        key = (interface, sighting.vid or 0, sighting.ip)
        entry = self.entries.get(key)
        payload: NeighbourNew | NeighbourRefreshed | NeighbourMoved | None = None
        if entry is None:
            self.entries[key] = Entry(sighting.mac, now, now, 1, now)
            payload = NeighbourNew(**_fields(interface, sighting, now))
        elif entry.mac != sighting.mac:
            fields = _fields(interface, sighting, now)
            payload = NeighbourMoved(**fields, previous_mac=entry.mac)
            self.entries[key] = Entry(sighting.mac, now, now, 1, now)
        else:  # the common case on a busy link: no event, nothing built
            entry.count += 1
            entry.last_seen = now
            if (now - entry.last_event_at).total_seconds() >= self.refresh_interval_s:
                entry.last_event_at = now
                payload = NeighbourRefreshed(**_fields(interface, sighting, now))
        self._dirty.add(key)
        if payload is not None:
            self._events.append(new_event(payload, subject=sighting.ip))
            if self.on_event is not None:
                self.on_event(payload.event_name)
        if len(self._dirty) >= self.flush_batch or len(self._events) >= self.flush_batch:
            self._wake.set()
        for listener in self.listeners:
            listener(interface, sighting)

    def observe_name(
        self, interface: str, sighting: NameSighting, now: datetime | None = None
    ) -> None:
        """Decide one mDNS name: an event when it is new for the address, or changed."""
        now = now or utcnow()
        key = (interface, sighting.ip)
        entry = self.names.get(key)
        if entry is not None and entry.hostname == sighting.hostname:
            entry.count += 1
            entry.last_seen = now
        else:
            self.names[key] = NameEntry(sighting.hostname, now, now, 1)
            payload = MdnsNameSeen(
                ip=sighting.ip,
                hostname=sighting.hostname,
                interface=interface,
                vid=sighting.vid,
                seen_at=now,
            )
            self._events.append(new_event(payload, subject=sighting.ip))
            if self.on_event is not None:
                self.on_event(payload.event_name)
        self._dirty_names.add(key)
        if len(self._dirty_names) >= self.flush_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Neighbours waiting to be written."""
        return len(self._dirty)

    async def flush(self) -> int:
        """Write what waits (at most ``flush_batch`` neighbours); returns how many rows."""
        async with self._lock:
            return await self._flush()

    async def _flush(self) -> int:
        if not self._dirty and not self._events and not self._dirty_names:
            return 0
        keys = list(self._dirty)[: self.flush_batch]
        events = self._events[: self.flush_batch]
        rows = []
        for key in keys:
            entry = self.entries.get(key)
            if entry is None:
                continue
            interface, vid, ip = key
            rows.append(
                {
                    "ip": ip,
                    "mac": entry.mac,
                    "vid": vid,
                    "interface": interface,
                    "observer": self.observer,
                    "first_seen": entry.first_seen,
                    "last_seen": entry.last_seen,
                    "count": entry.count,
                }
            )
        name_keys = list(self._dirty_names)[: self.flush_batch]
        names = [
            {
                "ip": ip,
                "interface": interface,
                "hostname": n.hostname,
                "first_seen": n.first_seen,
                "last_seen": n.last_seen,
                "count": n.count,
            }
            for interface, ip in name_keys
            if (n := self.names.get((interface, ip))) is not None
        ]
        # Taken out before the write: sightings decided meanwhile mark their keys again.
        self._dirty.difference_update(keys)
        self._dirty_names.difference_update(name_keys)
        del self._events[: len(events)]

        def keep() -> None:
            self._dirty.update(keys)
            self._dirty_names.update(name_keys)
            self._events[:0] = events  # kept, in order, for the next round

        # A cancelled await does not stop a write already under way (on SQLite it runs in
        # the writer thread) and may commit after all: kept again then, its events would be
        # staged twice and every later write would fail on their ids. So the write is
        # shielded and its outcome awaited before the batch is kept or let go.
        write = asyncio.ensure_future(
            self.db.run_transaction(
                functools.partial(_write, rows=rows, names=names, events=events)
            )
        )
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            try:
                await asyncio.wait([write])  # cancelled again: the outcome stays unknown
            finally:
                if write.done() and (write.cancelled() or write.exception() is not None):
                    keep()
            raise
        except BaseException:
            keep()
            raise
        return len(rows)

    async def clear(self, mac: str | None, ip: str | None) -> int:
        """Forget the neighbours of ``mac`` and/or ``ip`` (every one when both are None),
        with one ``neighbour.cleared`` each; returns how many (address, MAC) pairs."""
        async with self._lock:
            while self._dirty or self._events or self._dirty_names:  # rows must be on disk
                await self._flush()
            pairs = await self.db.run_transaction(functools.partial(_clear, mac=mac, ip=ip))
            for key in [
                k
                for k, e in self.entries.items()
                if (mac is None or e.mac == mac) and (ip is None or k[2] == ip)
            ]:
                del self.entries[key]
            gone = {a for a, _ in pairs}
            for name_key in [k for k in self.names if (mac is None and ip is None) or k[1] in gone]:
                del self.names[name_key]
        return len(pairs)

    async def run(self) -> None:
        """Write batches until cancelled; one last write at stop."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
                self._wake.clear()
                try:
                    while await self.flush() >= self.flush_batch:
                        pass
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database may be away: kept for the next round
                    log.warning("neighbours not written yet (%d waiting): %s", self.pending, exc)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.flush()), 2)
