"""Transactional outbox: an event commits with the state change it describes.

A service writes its change and calls :func:`stage` in the same transaction. If the
transaction rolls back, the event never existed. If it commits, :class:`OutboxRelay`
publishes it to JetStream (``Nats-Msg-Id`` = event id) and only then deletes the row. A crash
or a bus outage between commit and publish leaves the row in place, and the relay sends it
when it can; a crash after publish but before delete re-sends it, which the stream's
duplicate window and the consumers' idempotency absorb.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, func, insert
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from . import telemetry
from .bus import Bus
from .db import OUTBOX_FLAG, Database
from .events import Event, utcnow
from .messaging import OutboxMessage
from .metrics import ServiceMetrics

log = logging.getLogger(__name__)


_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
_OLDEST = sa_select(_OUTBOX).order_by(_OUTBOX.c.seq).limit(bindparam("batch"))


def _outbox_row(event: Event[Any]) -> dict[str, Any]:
    # The current trace context goes with the event, so the trace continues in consumers.
    return {
        "event_id": event.id,
        "subject": event.nats_subject,
        "event_type": event.type,
        "body": event.model_dump_json(),
        "headers": json.dumps(telemetry.trace_headers()),
        "created_at": utcnow(),
    }


def stage(session: AsyncSession, event: Event[Any]) -> None:
    """Add an event to the outbox inside the caller's transaction (ORM session)."""
    session.add(OutboxMessage(**_outbox_row(event)))
    session.info[OUTBOX_FLAG] = True


def stage_on(connection: Connection, event: Event[Any]) -> None:
    """Add an event to the outbox inside a :meth:`Database.run_transaction` transaction."""
    connection.execute(insert(OutboxMessage), [_outbox_row(event)])
    connection.info[OUTBOX_FLAG] = True


class OutboxRelay:
    """Publishes committed outbox rows in outbox order; woken on commit, polling as a fallback.

    Outbox order is commit order on SQLite (one writer at a time). On PostgreSQL two
    transactions committing at once may be published in either order; events of one object
    are written by one transaction at a time, so their order holds.

    Several replicas may relay from one database: a row two of them send is one message,
    because JetStream drops the second copy by its ``Nats-Msg-Id``.
    """

    def __init__(
        self,
        db: Database,
        bus: Bus,
        metrics: ServiceMetrics,
        *,
        batch: int = 200,
        poll_interval: float = 1.0,
    ) -> None:
        self.db = db
        self.bus = bus
        self.metrics = metrics
        self.batch = batch
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        db.on_outbox_commit(self._wake.set)

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows; returns how many were published.

        Raises whatever the bus raised when it could not take them (the rows stay).
        """
        # Core, in one hop each way: on SQLite the ORM through aiosqlite costs a thread hop
        # per driver call, and the relay runs after every commit.
        rows = await self.db.run_transaction(self._oldest)
        if not rows:
            self.metrics.outbox_pending.set(0)
            return 0
        await self.bus.publish_batch(
            [(r.subject, r.body.encode(), r.event_id, json.loads(r.headers)) for r in rows]
        )
        published = delete(OutboxMessage).where(col(OutboxMessage.seq).in_([r.seq for r in rows]))
        await self.db.run_transaction(lambda connection: connection.execute(published))
        for row in rows:
            self.metrics.events_published(row.event_type).inc()
        return len(rows)

    def _oldest(self, connection: Connection) -> Sequence[Row[Any]]:
        return connection.execute(_OLDEST, {"batch": self.batch}).all()

    async def pending(self) -> int:
        """How many events wait to be published."""
        async with self.db.read() as session:
            return int((await session.exec(select(func.count()).select_from(OutboxMessage))).one())

    async def run(self) -> None:
        """Relay until cancelled; back off while the bus is down."""
        backoff = self.poll_interval
        while True:
            self._wake.clear()
            try:
                published = await self.publish_pending()
                backoff = self.poll_interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay cannot publish yet (%s); retrying", type(exc).__name__)
                self.metrics.outbox_pending.set(await self._safe_pending())
                published = 0
                backoff = min(backoff * 2, 5.0)
            if published >= self.batch:
                continue
            if published:
                self.metrics.outbox_pending.set(0)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass

    async def _safe_pending(self) -> int:
        try:
            return await self.pending()
        except Exception:
            return -1
