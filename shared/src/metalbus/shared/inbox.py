"""Idempotent consumption: each event id is applied at most once per consumer.

The handler's changes and the record that the event was processed commit in one
transaction. A redelivered event (after a crash, a nak, an ack that got lost) finds its
record and is acknowledged without being applied again. Two replicas racing on the same
event collide on the primary key; the loser rolls back and acknowledges.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from .db import Database
from .events import RawEvent, utcnow
from .messaging import ProcessedEvent

log = logging.getLogger(__name__)

ApplyEvent = Callable[[AsyncSession, RawEvent], Awaitable[None]]


def idempotent(
    db: Database, consumer: str, apply: ApplyEvent
) -> Callable[[RawEvent], Awaitable[None]]:
    """Wrap ``apply(session, event)`` so it runs once per event id for this consumer."""

    async def handle(event: RawEvent) -> None:
        try:
            async with db.transaction() as session:
                if await session.get(ProcessedEvent, (consumer, event.id)) is not None:
                    log.debug("consumer %s already applied event %s", consumer, event.id)
                    return
                session.add(
                    ProcessedEvent(consumer=consumer, event_id=event.id, processed_at=utcnow())
                )
                await apply(session, event)
        except IntegrityError:
            async with db.read() as session:
                if await session.get(ProcessedEvent, (consumer, event.id)) is None:
                    raise
            log.debug("consumer %s: event %s was applied by another replica", consumer, event.id)

    return handle


async def forget_processed(db: Database, older_than: timedelta) -> int:
    """Drop processed-event records older than the stream keeps events (they can't come back)."""
    cutoff = utcnow() - older_than
    async with db.transaction() as session:
        result = await session.exec(
            delete(ProcessedEvent).where(col(ProcessedEvent.processed_at) < cutoff)
        )
        return int(result.rowcount or 0)
