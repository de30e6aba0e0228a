"""``/api/v1/events``: the event history with paging, and the live stream (Server-Sent Events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from sqlmodel import col, select

from metalbus.shared.contract.ipam import MAX_ID
from metalbus.shared.errors import NotFound
from metalbus.shared.events import RawEvent
from metalbus.shared.runtime import ServiceRuntime

from ..deps import HubDep, Reader, ReadSession, RuntimeDep, SettingsDep
from ..eventlog import TypeFilter, page_after, seq_of, to_event, to_public
from ..models import EventPage, EventPublic, EventRecord
from . import API_PREFIX, problem_responses

router = APIRouter(
    prefix=API_PREFIX, tags=["events"], responses=problem_responses(401, 403, 404, 422)
)
TypesQuery = Annotated[
    list[str], Query(alias="type", description="event types; a trailing * matches a prefix")
]


@router.get(
    "/events",
    response_model=EventPage,
    summary="Event history, newest first unless `after` is given",
)
async def list_events(
    _: Reader,
    session: ReadSession,
    types: TypesQuery = [],  # noqa: B006 (FastAPI copies query defaults)
    subject: Annotated[
        str | None, Query(max_length=255, description="only events about this object")
    ] = None,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="cursor: events older than this seq")
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_ID, description="cursor: events newer than this seq, oldest first"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    type_filter = TypeFilter(types)
    query = select(EventRecord)
    if type_filter:
        query = query.where(type_filter.where(EventRecord.type))
    if subject is not None:
        query = query.where(EventRecord.subject == subject)
    if after is not None:
        query = query.where(col(EventRecord.seq) > after).order_by(col(EventRecord.seq))
    else:
        if before is not None:
            query = query.where(col(EventRecord.seq) < before)
        query = query.order_by(col(EventRecord.seq).desc())
    rows = list((await session.exec(query.limit(limit + 1))).all())
    more = len(rows) > limit
    items = [to_public(r) for r in rows[:limit]]
    return EventPage(items=items, next=items[-1].seq if more and items else None)


@router.get(
    "/events/stream",
    summary="Live events as Server-Sent Events",
    description="Each message has `id` = event id, `event` = event type and `data` = the "
    "CloudEvents "
    "envelope. Reconnect with `Last-Event-ID` to replay what was missed from the log.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    _: Reader,
    runtime: RuntimeDep,
    hub: HubDep,
    settings: SettingsDep,
    types: TypesQuery = [],  # noqa: B006
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    type_filter = TypeFilter(types)
    listener = hub.listen(type_filter)  # listen before replaying, so nothing falls in between
    resume_from = await _resume_point(runtime, last_event_id)
    return StreamingResponse(
        _sse(runtime, hub, listener, type_filter, resume_from, settings.sse_heartbeat_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/events/{event_id}", response_model=EventPublic, summary="One event by id")
async def get_event(event_id: str, _: Reader, session: ReadSession) -> EventPublic:
    row = (await session.exec(select(EventRecord).where(EventRecord.event_id == event_id))).first()
    if row is None:
        raise NotFound(f"no event {event_id} in the log", field="event_id")
    return to_public(row)


async def _resume_point(runtime: ServiceRuntime, last_event_id: str | None) -> int | None:
    if not last_event_id:
        return None
    async with runtime.db.read() as session:
        return await seq_of(session, last_event_id)


def _frame(event: RawEvent) -> bytes:
    return f"id: {event.id}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()


async def _sse(
    runtime: ServiceRuntime,
    hub: HubDep,
    listener,
    types: TypeFilter,
    resume_from: int | None,  # type: ignore[no-untyped-def]
    heartbeat: float,
) -> AsyncIterator[bytes]:
    try:
        yield b": connected\n\n"
        replayed: set[str] = set()
        if resume_from is not None:
            cursor = resume_from
            while True:
                async with runtime.db.read() as session:
                    rows = await page_after(session, cursor, types, 500)
                for row in rows:
                    replayed.add(row.event_id)
                    yield _frame(to_event(row))
                if len(rows) < 500:
                    break
                cursor = rows[-1].seq or cursor
        while True:
            try:
                event = await asyncio.wait_for(listener.queue.get(), timeout=heartbeat)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if event is None:
                return
            if event.id in replayed:
                continue
            yield _frame(event)
    finally:
        hub.forget(listener)
