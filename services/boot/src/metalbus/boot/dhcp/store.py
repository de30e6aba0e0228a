"""Leases made durable with group commit, and reported to ipam through the outbox.

:class:`LeaseWriter` takes the lease changes of every packet decided while the previous
write was running and writes them in one short transaction (one ``fsync`` for all of
them), with their ``boot.lease.committed`` / ``boot.lease.ended`` events. Each caller waits
for the commit that holds its change, so an ACK leaves only once its lease is on disk.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, delete, insert, select

from metalbus.shared.contract.boot import LeaseCommitted, LeaseEnded
from metalbus.shared.db import Database
from metalbus.shared.events import new_event, utcnow
from metalbus.shared.outbox import stage_on

from ..models import LeaseRow
from .engine import EndReason
from .leases import Lease

log = logging.getLogger(__name__)

LEASES = LeaseRow.__table__  # type: ignore[attr-defined]
_DELETE = delete(LEASES).where(LEASES.c.ip == bindparam("gone_ip"))
_INSERT = insert(LEASES)


@dataclass(frozen=True)
class Change:
    """One lease to write (``ended`` None) or to end (with why)."""

    lease: Lease
    ended: EndReason | None = None


def _time(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def _write(connection: Connection, changes: list[Change]) -> None:
    """Apply the changes in order (a lease may be made and ended in one batch)."""
    now = utcnow()
    for change in changes:
        lease = change.lease
        ip = lease.ip_text
        connection.execute(_DELETE, {"gone_ip": ip})
        if change.ended is None:
            connection.execute(
                _INSERT,
                {
                    "ip": ip,
                    "mac": lease.mac,
                    "client_key": lease.client_key,
                    "client_id": lease.client_id,
                    "hostname": lease.hostname,
                    "subnet_id": lease.subnet_id,
                    "expires_at": _time(lease.expires),
                    "updated_at": now,
                },
            )
            committed = LeaseCommitted(
                ip=ip,
                mac=lease.mac,
                expires_at=_time(lease.expires),
                hostname=_hostname(lease.hostname),
                client_id=lease.client_id[:255] if lease.client_id else None,
            )
            stage_on(connection, new_event(committed, subject=ip))
        else:
            ended = LeaseEnded(ip=ip, mac=lease.mac, reason=change.ended)
            stage_on(connection, new_event(ended, subject=ip))


def _hostname(name: str | None) -> str | None:
    # What a client calls itself is free text; the event carries it only when it fits.
    return name if name and len(name) <= 253 else None


class LeaseWriter:
    """Group commit: one writer task, one transaction per batch of waiting changes."""

    def __init__(self, db: Database, observe_batch: Callable[[float], None] | None = None) -> None:
        self.db = db
        self.observe_batch = observe_batch
        self._waiting: list[tuple[tuple[Change, ...], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()

    async def write(self, *changes: Change) -> None:
        """Return once ``changes`` are committed; raises what the database raised."""
        if not changes:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((changes, done))
        self._wake.set()
        await done

    async def run(self) -> None:
        """Write batches until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._waiting = self._waiting, []
            if not batch:
                continue
            changes = [change for group, _ in batch for change in group]
            try:
                await self.db.run_transaction(functools.partial(_write, changes=changes))
            except Exception as exc:  # every waiter hears it: its reply is not sent
                log.warning("lease batch of %d not written: %s", len(changes), exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if self.observe_batch is not None:
                self.observe_batch(len(changes))
            for _, future in batch:
                if not future.done():
                    future.set_result(None)


async def load_leases(db: Database) -> list[Lease]:
    """Every lease on disk (after a restart: the memory DHCP answers from)."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(LEASES))).all()
    out = []
    for row in rows:
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        out.append(
            Lease(
                ip=int(ipaddress.IPv4Address(row.ip)),
                mac=row.mac,
                client_key=row.client_key,
                subnet_id=row.subnet_id,
                expires=expires.timestamp(),
                hostname=row.hostname,
                client_id=row.client_id,
            )
        )
    return out
