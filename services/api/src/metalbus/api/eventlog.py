"""The event log (every service's events, kept for paging) and the live fan-out for SSE.

Two paths on purpose:
- The log is fed by durable consumers (one per service stream) shared by the api replicas,
  so each event is written once, whatever the number of replicas.
- The live stream is fed by a plain subscription on every replica, so each replica's
  clients see every event, not just the share its consumer got.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared import subjects
from metalbus.shared.bus import Bus
from metalbus.shared.errors import ValidationFailed
from metalbus.shared.events import RawEvent, as_utc, decode_raw
from metalbus.shared.runtime import ServiceRuntime

from .models import EventPublic, EventRecord

log = logging.getLogger(__name__)


class TypeFilter:
    """Matches event types exactly, or by prefix when a pattern ends in ``*``."""

    def __init__(self, patterns: Sequence[str]) -> None:
        for pattern in patterns:
            if not pattern or "*" in pattern[:-1]:
                raise ValidationFailed(f"bad event type filter {pattern!r}", field="query.type")
        self.exact = {p for p in patterns if not p.endswith("*")}
        self.prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)

    def matches(self, type_: str) -> bool:
        """True when no pattern was given or one matches."""
        if not self:
            return True
        return type_ in self.exact or type_.startswith(self.prefixes)

    def where(self, column: Any) -> Any:
        """The same filter as an SQL condition."""
        from sqlalchemy import or_

        conditions = [column.in_(sorted(self.exact))] if self.exact else []
        conditions += [column.startswith(p, autoescape=True) for p in self.prefixes]
        return or_(*conditions)


def to_event(row: EventRecord) -> RawEvent:
    """A log row as the envelope it was received as."""
    return RawEvent(
        id=row.event_id,
        source=row.source,
        type=row.type,
        subject=row.subject,
        time=as_utc(row.time),
        data=json.loads(row.data),
    )


def to_public(row: EventRecord) -> EventPublic:
    """A log row as the API shows it: the envelope and its place in the log."""
    assert row.seq is not None
    event = to_event(row)
    return EventPublic(
        seq=row.seq,
        id=event.id,
        type=event.type,
        source=event.source,
        subject=event.subject,
        time=event.time,
        data=event.data,
    )


async def record(session: AsyncSession, event: RawEvent) -> None:
    """Apply one event to the log (runs inside the idempotent consumer's transaction)."""
    session.add(
        EventRecord(
            event_id=event.id,
            type=event.type,
            source=event.source,
            subject=event.subject,
            time=event.time,
            data=json.dumps(event.data),
        )
    )


def register_consumers(runtime: ServiceRuntime) -> None:
    """One durable consumer per service stream, writing into the log."""
    for service in subjects.SERVICES:
        runtime.consumer(service, f"eventlog-{service}", record)


async def seq_of(session: AsyncSession, event_id: str) -> int | None:
    """Position of an event in the log (for SSE resumption)."""
    return (
        await session.exec(select(EventRecord.seq).where(EventRecord.event_id == event_id))
    ).first()


async def page_after(
    session: AsyncSession, after: int, types: TypeFilter, limit: int
) -> list[EventRecord]:
    """Events after ``after`` in log order, matching ``types``."""
    query = select(EventRecord).where(col(EventRecord.seq) > after)
    if types:
        query = query.where(types.where(EventRecord.type))
    return list((await session.exec(query.order_by(col(EventRecord.seq)).limit(limit))).all())


@dataclass(eq=False)
class Listener:
    """One live-stream client: its filter and a bounded queue (``None`` = cut off, reconnect)."""

    types: TypeFilter
    queue: asyncio.Queue[RawEvent | None]
    overflowed: bool = False


@dataclass
class EventHub:
    """Fans the live event subscription out to SSE clients."""

    queue_size: int = 1000
    listeners: set[Listener] = field(default_factory=set)
    _subscription: Any = None
    # A re-sent event (an outbox relay that crashed between publish and delete) is dropped
    # by the stream but still reaches plain subscribers: remember recent ids to skip it.
    _recent: OrderedDict[str, None] = field(default_factory=OrderedDict)
    recent_limit: int = 10_000

    async def start(self, bus: Bus) -> None:
        """Subscribe to every service's events."""
        self._subscription = await bus.subscribe_events(subjects.ALL_EVENTS, self._on_message)

    async def stop(self) -> None:
        """Unsubscribe and end every client's stream."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        for listener in self.listeners:
            with contextlib.suppress(asyncio.QueueFull):
                listener.queue.put_nowait(None)

    def listen(self, types: TypeFilter) -> Listener:
        """Register a client."""
        listener = Listener(types=types, queue=asyncio.Queue(self.queue_size))
        self.listeners.add(listener)
        return listener

    def forget(self, listener: Listener) -> None:
        """Unregister a client."""
        self.listeners.discard(listener)

    async def _on_message(self, msg: Msg) -> None:
        try:
            event = decode_raw(msg.data)
        except ValidationFailed:
            return
        if event.id in self._recent:
            return
        self._recent[event.id] = None
        if len(self._recent) > self.recent_limit:
            self._recent.popitem(last=False)
        for listener in list(self.listeners):
            if listener.overflowed or not listener.types.matches(event.type):
                continue
            try:
                listener.queue.put_nowait(event)
            except asyncio.QueueFull:
                # A client that cannot keep up is cut off rather than slowing everyone; it
                # reconnects with Last-Event-ID and catches up from the log.
                listener.overflowed = True
                with contextlib.suppress(asyncio.QueueEmpty):
                    listener.queue.get_nowait()
                listener.queue.put_nowait(None)
