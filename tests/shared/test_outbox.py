"""The transactional outbox and idempotent consumers, on a real bus and real databases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import nats.js.errors
import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared import outbox, subjects
from metalbus.shared.events import EventPayload, RawEvent, event, new_event
from metalbus.shared.messaging import OutboxMessage, ProcessedEvent
from metalbus.shared.runtime import ServiceDefinition, ServiceRuntime
from metalbus.shared.settings import ServiceSettings
from tests.conftest import DatabaseFactory
from tests.helpers import NatsServer, async_wait_for

PRODUCER = "widgets"


@event(PRODUCER, "widget", "made")
class WidgetMade(EventPayload):
    serial: str


@event("flaky", "echo", "made")
class EchoMade(EventPayload):
    attempt: int


class Boom(Exception):
    pass


def settings(nats_url: str, db: tuple[str, str | None]) -> ServiceSettings:
    url, schema = db
    return ServiceSettings(
        nats_url=nats_url, database_url=url, database_schema=schema, outbox_poll_s=0.2
    )


async def start(
    name: str,
    nats_url: str,
    db: tuple[str, str | None],
    setup: Callable[[ServiceRuntime], Awaitable[None]] | None = None,
) -> ServiceRuntime:
    rt = ServiceRuntime(
        ServiceDefinition(name, f"{name} for tests", ServiceSettings, setup=setup),
        settings(nats_url, db),
    )
    await rt.start()
    return rt


@pytest.fixture
async def runtimes() -> AsyncIterator[list[ServiceRuntime]]:
    started: list[ServiceRuntime] = []
    yield started
    for rt in reversed(started):
        await rt.stop()


async def stream_events(nats_url: str, service: str) -> list[RawEvent]:
    """Every message in a service's stream, read with an ephemeral ordered look."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(subjects.stream_name(service))
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            msg = await js.get_msg(subjects.stream_name(service), seq)
            out.append(RawEvent.model_validate_json(msg.data or b""))
        return out
    finally:
        await nc.close()


async def outbox_rows(rt: ServiceRuntime) -> list[OutboxMessage]:
    async with rt.db.read() as session:
        return list((await session.exec(select(OutboxMessage))).all())


async def outbox_drained(rt: ServiceRuntime) -> None:
    """The relay deletes a row just after the stream acknowledged it: wait for that."""

    async def empty() -> bool:
        return await outbox_rows(rt) == []

    await async_wait_for(empty, 10, "the relay to clear the outbox")


async def consumer_idle(rt: ServiceRuntime, durable: str) -> bool:
    """Whether a durable consumer has nothing left to deliver or to hear back about."""
    try:
        info = await rt.bus.js.consumer_info(subjects.stream_name(PRODUCER), durable)
    except nats.js.errors.NotFoundError:
        return False  # the consumer is created by its own task, maybe not yet
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_rolled_back_event_is_never_published(
    nats_server: NatsServer, db_factory: DatabaseFactory, runtimes: list[ServiceRuntime]
) -> None:
    rt = await start(PRODUCER, nats_server.url, db_factory())
    runtimes.append(rt)
    lost = new_event(WidgetMade(serial="rolled-back"))
    kept = new_event(WidgetMade(serial="committed"))

    with pytest.raises(Boom):
        async with rt.db.transaction() as session:
            outbox.stage(session, lost)
            raise Boom
    async with rt.db.transaction() as session:
        outbox.stage(session, kept)

    async def published() -> list[RawEvent]:
        return await stream_events(nats_server.url, PRODUCER)

    events = await async_wait_for(published, 10, "the committed event to be published")
    assert [e.id for e in events] == [kept.id]
    await outbox_drained(rt)


async def test_event_survives_a_bus_outage_and_is_applied_exactly_once(
    nats_server: NatsServer, db_factory: DatabaseFactory, runtimes: list[ServiceRuntime]
) -> None:
    applied: list[str] = []

    async def apply(session: AsyncSession, ev: RawEvent) -> None:
        applied.append(ev.id)

    async def sink_setup(rt: ServiceRuntime) -> None:
        rt.consumer(PRODUCER, "widgets", apply)

    producer = await start(PRODUCER, nats_server.url, db_factory())
    runtimes.append(producer)
    sink = await start("sink", nats_server.url, db_factory(), sink_setup)
    runtimes.append(sink)

    nats_server.stop()
    await async_wait_for(
        lambda: not producer.bus.is_connected, 10, "the producer to see the bus go"
    )
    made = new_event(WidgetMade(serial=uuid.uuid4().hex))
    async with producer.db.transaction() as session:
        outbox.stage(session, made)
    # The relay is woken by the commit and fails; the event must still be waiting.
    await async_wait_for(
        lambda: producer.metrics.registry.get_sample_value("metalbus_outbox_pending") == 1,
        10,
        "the relay to report the pending event",
    )
    assert [r.event_id for r in await outbox_rows(producer)] == [made.id]
    assert applied == []

    nats_server.start()  # same port, same JetStream store

    async def delivered() -> bool:
        return applied == [made.id]

    await async_wait_for(delivered, 30, "the event to reach the consumer after the bus came back")
    await outbox_drained(producer)

    # A re-send inside the duplicate window is dropped by the stream...
    await producer.bus.publish_raw(made.nats_subject, made.to_bytes(), msg_id=made.id)
    assert len(await stream_events(nats_server.url, PRODUCER)) == 1
    # ...and one that slips past it (another message id) is recognised by the consumer.
    await producer.bus.publish_raw(made.nats_subject, made.to_bytes(), msg_id=f"{made.id}-again")
    assert len(await stream_events(nats_server.url, PRODUCER)) == 2

    await async_wait_for(
        lambda: consumer_idle(sink, "sink-widgets"), 10, "the consumer to take both copies"
    )
    assert applied == [made.id]
    async with sink.db.read() as session:
        processed = (await session.exec(select(ProcessedEvent))).all()
    assert [(p.consumer, p.event_id) for p in processed] == [("sink-widgets", made.id)]


async def test_failing_handler_is_retried_and_its_changes_roll_back(
    nats_server: NatsServer, db_factory: DatabaseFactory, runtimes: list[ServiceRuntime]
) -> None:
    attempts: list[str] = []

    async def flaky(session: AsyncSession, ev: RawEvent) -> None:
        attempts.append(ev.id)
        # Stage an event of our own: it must vanish with the failed attempt.
        outbox.stage(session, new_event(EchoMade(attempt=len(attempts))))
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    async def setup(rt: ServiceRuntime) -> None:
        rt.consumer(PRODUCER, "flaky", flaky)

    producer = await start(PRODUCER, nats_server.url, db_factory())
    runtimes.append(producer)
    consumer = await start("flaky", nats_server.url, db_factory(), setup)
    runtimes.append(consumer)

    made = new_event(WidgetMade(serial="x"))
    await producer.bus.publish(made)

    async def twice() -> bool:
        return len(attempts) == 2

    await async_wait_for(twice, 20, "the redelivery after the failure")

    # Only the successful attempt's own event was committed (and then published).
    async def republished() -> list[RawEvent]:
        return await stream_events(nats_server.url, "flaky")

    echoes = await async_wait_for(republished, 10, "the consumer's own event")
    assert [e.data["attempt"] for e in echoes] == [2]
    assert attempts == [made.id, made.id]


async def test_consumer_drops_hopeless_events_and_gives_up_after_the_last_delivery(
    nats_server: NatsServer, db_factory: DatabaseFactory, runtimes: list[ServiceRuntime]
) -> None:
    """A typed non-retryable error is final at once; anything else stops at max_deliver."""
    from metalbus.shared.errors import ValidationFailed

    calls: dict[str, int] = {}

    async def judge(ev: RawEvent) -> None:
        calls[ev.data["serial"]] = calls.get(ev.data["serial"], 0) + 1
        if ev.data["serial"] == "hopeless":
            raise ValidationFailed("this widget can never be applied", field="data.serial")
        raise RuntimeError("always broken")

    producer = await start(PRODUCER, nats_server.url, db_factory())
    runtimes.append(producer)
    await producer.bus.consume(
        stream_service=PRODUCER, durable="judge", handler=judge, max_deliver=3
    )
    await producer.bus.publish(new_event(WidgetMade(serial="hopeless")))
    await producer.bus.publish(new_event(WidgetMade(serial="broken")))

    async def settled() -> bool:
        return calls.get("broken") == 3 and await consumer_idle(producer, "judge")

    await async_wait_for(settled, 30, "both events to be dropped")
    assert calls == {"hopeless": 1, "broken": 3}
    metrics = producer.metrics.exposition().decode()
    assert 'metalbus_events_consumed_total{consumer="judge",outcome="rejected"} 1.0' in metrics
    assert 'metalbus_events_consumed_total{consumer="judge",outcome="gave_up"} 1.0' in metrics
