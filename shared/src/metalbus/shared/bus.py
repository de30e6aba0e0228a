"""The NATS bus: typed request/reply in queue groups, JetStream events, durable consumers.

- :meth:`Bus.request` sends a :class:`~metalbus.shared.commands.Command` with a timeout and
  the current trace context; a typed :class:`~metalbus.shared.errors.MetalbusError` comes back
  as that error, no responders as ServiceUnavailable, silence as RequestTimeout.
- :meth:`Bus.serve` runs handlers as a nats.micro service in the queue group
  ``metalbus-<service>`` (so replicas split the load and ``$SRV.PING/INFO/STATS`` work).
- :meth:`Bus.publish` sends an event to JetStream with its id as ``Nats-Msg-Id``, so a
  re-send inside the stream's duplicate window is dropped by the server.
- :meth:`Bus.consume` runs a durable pull consumer that acks explicitly: after the handler
  succeeds, ``nak`` with back-off when it fails for a passing reason, ``term`` when the
  message can never succeed. Idempotency on the event id is :mod:`metalbus.shared.inbox`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import nats.micro
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api as js_api
from nats.micro.request import Request as MicroRequest
from nats.micro.service import Service as MicroService
from opentelemetry import trace
from pydantic import BaseModel, ValidationError

from metalbus.shared.tasks import cancel_all

from . import subjects, telemetry
from .commands import Command
from .errors import (
    InternalError,
    MetalbusError,
    RequestTimeout,
    ServiceUnavailable,
    ValidationFailed,
)
from .events import Event, RawEvent, decode_raw
from .metrics import ServiceMetrics

log = logging.getLogger(__name__)

Req = TypeVar("Req", bound=BaseModel)
Resp = TypeVar("Resp", bound=BaseModel)
Handler = Callable[[Any], Awaitable[BaseModel]]
EventHandler = Callable[[RawEvent], Awaitable[None]]

MSG_ID_HEADER = "Nats-Msg-Id"
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
ERROR_HEADER = "Nats-Service-Error"


@dataclass(frozen=True)
class StreamSettings:
    """How a service's event stream is kept."""

    replicas: int = 1
    max_age: timedelta = timedelta(days=7)
    duplicate_window: timedelta = timedelta(minutes=2)


class Bus:
    """A connection to NATS shared by one process's endpoints, publishers and consumers."""

    def __init__(
        self, nc: NatsClient, *, service: str, metrics: ServiceMetrics | None = None
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.service = service
        self.metrics = metrics or ServiceMetrics(service)
        self._micro: list[MicroService] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._consumers: list[asyncio.Task[None]] = []
        self._pull_subscriptions: list[Any] = []

    @classmethod
    async def connect(
        cls,
        servers: str | Sequence[str],
        *,
        service: str,
        instance: str = "",
        metrics: ServiceMetrics | None = None,
        user: str | None = None,
        password: str | None = None,
        creds_file: str | None = None,
        tls: ssl.SSLContext | None = None,
        connect_deadline: float = 30.0,
    ) -> Bus:
        """Connect, retrying the first connection until ``connect_deadline`` seconds pass.

        After the first connection the client reconnects forever on its own. Replies come
        back on ``_INBOX_<service>`` so a NATS user per service can be limited to its own
        replies (see :mod:`metalbus.shared.bus_auth`).

        Raises:
            ServiceUnavailable: no server could be reached before the deadline.
        """
        metrics = metrics or ServiceMetrics(service)
        urls = servers.split(",") if isinstance(servers, str) else list(servers)

        async def disconnected() -> None:
            metrics.bus_connected.set(0)
            log.warning("disconnected from NATS")

        async def reconnected() -> None:
            metrics.bus_connected.set(1)
            log.info("reconnected to NATS")

        async def error(exc: Exception) -> None:
            log.debug("NATS client error: %s", exc)

        deadline = time.monotonic() + connect_deadline
        delay = 0.1
        while True:
            try:
                # nats-py retries a first connection forever when reconnects are unlimited,
                # so the deadline is enforced here.
                nc = await asyncio.wait_for(
                    nats.connect(
                        servers=urls,
                        name=f"metalbus-{service} {instance}".strip(),
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=0.5,
                        drain_timeout=5,
                        connect_timeout=2,
                        user=user,
                        password=password,
                        user_credentials=creds_file,
                        tls=tls,
                        inbox_prefix=subjects.inbox_prefix(service),
                        disconnected_cb=disconnected,
                        reconnected_cb=reconnected,
                        error_cb=error,
                        allow_reconnect=True,
                    ),
                    timeout=max(deadline - time.monotonic(), 0.1),
                )
                break
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                if time.monotonic() + delay > deadline:
                    raise ServiceUnavailable(
                        f"cannot reach NATS at {','.join(urls)}: {exc}"
                    ) from exc
                log.info("waiting for NATS at %s: %s", ",".join(urls), exc)
                await asyncio.sleep(delay)  # deliberate back-off between connection attempts
                delay = min(delay * 2, 2.0)
        metrics.bus_connected.set(1)
        return cls(nc, service=service, metrics=metrics)

    @property
    def is_connected(self) -> bool:
        """True while the client holds a live connection."""
        return bool(self.nc.is_connected)

    # -- request/reply ------------------------------------------------------------------

    async def request(
        self, command: Command[Req, Resp], payload: Req, *, timeout: float | None = None
    ) -> Resp:
        """Send a command to its owning service and wait for the typed answer.

        Raises:
            ServiceUnavailable: the bus is down or no replica serves the command.
            RequestTimeout: no answer within the timeout.
            MetalbusError: the typed error the service answered with.
        """
        if not self.is_connected:
            raise ServiceUnavailable("the message bus is not connected")
        wait = command.timeout if timeout is None else timeout
        with telemetry.span(
            f"{command.subject} request",
            kind=trace.SpanKind.CLIENT,
            attributes={"messaging.system": "nats", "messaging.destination.name": command.subject},
        ):
            headers = telemetry.trace_headers() or None
            try:
                msg = await self.nc.request(
                    command.subject,
                    payload.model_dump_json().encode(),
                    timeout=wait,
                    headers=headers,
                )
            except nats.errors.NoRespondersError as exc:
                raise ServiceUnavailable(
                    f"no {command.service} service is answering {command.action}"
                ) from exc
            except (TimeoutError, nats.errors.TimeoutError) as exc:
                raise RequestTimeout(
                    f"{command.service} did not answer {command.action} within {wait:g}s"
                ) from exc
            except (
                nats.errors.ConnectionClosedError,
                nats.errors.ConnectionReconnectingError,
            ) as exc:
                raise ServiceUnavailable("the message bus is not connected") from exc
        return _decode_reply(command, msg)

    async def serve(
        self,
        commands: Sequence[tuple[Command[Any, Any], Handler]],
        *,
        version: str,
        instance: str,
        description: str = "",
        max_inflight: int = 64,
    ) -> None:
        """Serve handlers as one nats.micro service in this service's queue group.

        Each request runs in its own task (at most ``max_inflight`` at once per endpoint),
        so a slow request does not hold up the next one.
        """
        micro = await nats.micro.add_service(
            self.nc,
            name=subjects.queue_group(self.service),
            version=version,
            description=description or f"metalbus {self.service} service",
            metadata={"instance": instance},
            queue_group=subjects.queue_group(self.service),
        )
        for cmd, handler in commands:
            if cmd.service != self.service:
                raise ValueError(
                    f"{self.service} cannot serve {cmd.subject}: it belongs to {cmd.service}"
                )
            await micro.add_endpoint(
                name=cmd.action.replace(".", "_"),
                subject=cmd.subject,
                handler=self._endpoint(cmd, handler, asyncio.Semaphore(max_inflight)),
                metadata={"description": cmd.description} if cmd.description else None,
            )
        self._micro.append(micro)
        # The subscriptions reach the server with the next flush: until then a request
        # sent right after start (the service reports ready) could find no responders.
        await self.nc.flush()

    def _endpoint(
        self, cmd: Command[Any, Any], handler: Handler, slots: asyncio.Semaphore
    ) -> Callable[[MicroRequest], Awaitable[None]]:
        async def on_request(request: MicroRequest) -> None:
            await slots.acquire()
            task = asyncio.create_task(self._handle(cmd, handler, request))
            self._tasks.add(task)
            task.add_done_callback(finished)

        def finished(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            slots.release()

        return on_request

    async def _handle(
        self, cmd: Command[Any, Any], handler: Handler, request: MicroRequest
    ) -> None:
        started = time.perf_counter()
        outcome = "ok"
        with telemetry.span(
            f"{cmd.subject} process",
            carrier=request.headers or {},
            kind=trace.SpanKind.SERVER,
            attributes={"messaging.system": "nats", "messaging.destination.name": cmd.subject},
        ) as span:
            try:
                try:
                    payload = cmd.request.model_validate_json(request.data or b"{}")
                except ValidationError as exc:
                    raise _validation_error(exc) from exc
                result = await handler(payload)
                await request.respond(result.model_dump_json().encode())
            except MetalbusError as exc:
                outcome = exc.code
                span.set_attribute("error.type", exc.code)
                await _respond_error(request, exc)
            except Exception as exc:
                outcome = InternalError.code
                span.record_exception(exc)
                log.exception("handler for %s failed", cmd.subject)
                await _respond_error(request, InternalError(f"{cmd.action} failed unexpectedly"))
        self.metrics.rpc_requests(cmd.subject, outcome).inc()
        self.metrics.rpc_seconds(cmd.subject).observe(time.perf_counter() - started)

    # -- events -------------------------------------------------------------------------

    async def ensure_stream(
        self, service: str, settings: StreamSettings = StreamSettings()
    ) -> None:
        """Create or update the stream that holds a service's events (idempotent)."""
        config = js_api.StreamConfig(
            name=subjects.stream_name(service),
            subjects=[subjects.service_events(service)],
            retention=js_api.RetentionPolicy.LIMITS,
            storage=js_api.StorageType.FILE,
            num_replicas=settings.replicas,
            max_age=settings.max_age.total_seconds(),
            duplicate_window=settings.duplicate_window.total_seconds(),
        )
        try:
            await self.js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await self.js.update_stream(config)

    async def stream_exists(self, service: str) -> bool:
        """Whether the service's stream is there (part of readiness)."""
        try:
            await self.js.stream_info(subjects.stream_name(service))
        except nats.js.errors.NotFoundError:
            return False
        return True

    async def publish(self, event: Event[Any]) -> None:
        """Publish an event now (for facts not tied to a database change; else use the outbox)."""
        headers = telemetry.trace_headers()
        await self.publish_raw(
            event.nats_subject, event.to_bytes(), msg_id=event.id, headers=headers
        )
        self.metrics.events_published(event.type).inc()

    async def publish_raw(
        self,
        subject: str,
        body: bytes,
        *,
        msg_id: str,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        """Publish bytes to JetStream with ``Nats-Msg-Id`` and wait for the stream's ack."""
        all_headers = {**(headers or {}), MSG_ID_HEADER: msg_id}
        await self.js.publish(subject, body, headers=all_headers, timeout=timeout)

    async def publish_batch(
        self, messages: Sequence[tuple[str, bytes, str, dict[str, str]]], *, timeout: float = 5.0
    ) -> None:
        """Publish many (subject, body, msg_id, headers) in order, pipelined; wait for all acks.

        Raises on the first message the stream did not accept.
        """
        futures = []
        for subject, body, msg_id, headers in messages:
            futures.append(
                await self.js.publish_async(
                    subject, body, headers={**headers, MSG_ID_HEADER: msg_id}
                )
            )
        if futures:
            await asyncio.wait_for(asyncio.gather(*futures), timeout)

    async def consume(
        self,
        *,
        stream_service: str,
        durable: str,
        handler: EventHandler,
        filter_subject: str | None = None,
        batch: int = 64,
        max_deliver: int = 20,
        ack_wait: float = 30.0,
    ) -> None:
        """Start a durable pull consumer on another (or this) service's stream.

        The handler gets each event's envelope; its payload is validated by the handler
        (typically through :func:`metalbus.shared.events.decode_event`). Until the stream
        exists (its owner has not started yet) the consumer waits for it.
        """
        task = asyncio.create_task(
            self._consume_loop(
                stream_service, durable, handler, filter_subject, batch, max_deliver, ack_wait
            ),
            name=f"consumer {durable}",
        )
        self._consumers.append(task)

    async def _consume_loop(
        self,
        stream_service: str,
        durable: str,
        handler: EventHandler,
        filter_subject: str | None,
        batch: int,
        max_deliver: int,
        ack_wait: float,
    ) -> None:
        stream = subjects.stream_name(stream_service)
        subject = filter_subject or subjects.service_events(stream_service)
        config = js_api.ConsumerConfig(
            durable_name=durable,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL,
            max_deliver=max_deliver,
            ack_wait=ack_wait,
            filter_subject=subject,
        )
        sub = None
        delay = 0.2
        while sub is None:
            try:
                sub = await self.js.pull_subscribe(
                    subject, durable=durable, stream=stream, config=config
                )
            except (
                nats.js.errors.NotFoundError,
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                nats.errors.ConnectionReconnectingError,
            ) as exc:
                log.log(
                    logging.INFO if delay < 0.3 else logging.DEBUG,
                    "consumer %s waits for stream %s: %s",
                    durable,
                    stream,
                    type(exc).__name__,
                )
                # Deliberate back-off until the stream's owner creates it.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._pull_subscriptions.append(sub)
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=5)
            except nats.errors.TimeoutError:
                continue
            except (
                nats.errors.ConnectionClosedError,
                nats.errors.ConnectionReconnectingError,
                nats.js.errors.APIError,
            ) as exc:
                log.info("consumer %s: %s; retrying", durable, exc)
                await asyncio.sleep(0.5)  # deliberate back-off while the bus reconnects
                continue
            for msg in msgs:
                await self._deliver(durable, handler, msg, max_deliver)

    async def _deliver(
        self, durable: str, handler: EventHandler, msg: Msg, max_deliver: int
    ) -> None:
        try:
            envelope = decode_raw(msg.data)
        except ValidationFailed as exc:
            log.error("consumer %s drops a message that is not an event: %s", durable, exc)
            self.metrics.events_consumed(durable, "malformed").inc()
            await msg.term()
            return
        with telemetry.span(
            f"{msg.subject} process",
            carrier=msg.headers or {},
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "nats", "messaging.message.id": envelope.id},
        ):
            try:
                await handler(envelope)
            except Exception as exc:
                await self._failed(durable, msg, envelope.id, exc, max_deliver)
                return
        await msg.ack()
        self.metrics.events_consumed(durable, "ok").inc()

    async def _failed(
        self, durable: str, msg: Msg, event_id: str, exc: Exception, max_deliver: int
    ) -> None:
        """Nak a failed event for another try, or term it when it can never succeed.

        A typed non-retryable error is final at once. Anything else is retried with
        back-off until the last delivery JetStream allows; then the event is dropped with
        an error in the log and a ``gave_up`` count, never silently.
        """
        attempt = msg.metadata.num_delivered if msg.metadata else 1
        final = isinstance(exc, MetalbusError) and not exc.retryable
        if final or attempt >= max_deliver:
            reason = "it can never succeed" if final else f"it failed {attempt} times"
            log.error(
                "consumer %s drops event %s (%s): %s",
                durable,
                event_id,
                reason,
                exc,
                exc_info=not final,
            )
            self.metrics.events_consumed(durable, "rejected" if final else "gave_up").inc()
            await msg.term()
            return
        if isinstance(exc, MetalbusError):
            log.warning("consumer %s will retry event %s: %s", durable, event_id, exc)
        else:
            log.exception(
                "consumer %s failed on event %s; it will be redelivered",
                durable,
                event_id,
                exc_info=exc,
            )
        self.metrics.events_consumed(durable, "retry").inc()
        await msg.nak(delay=min(0.5 * 2**attempt, 30.0))

    async def subscribe_events(
        self, subject: str, callback: Callable[[Msg], Awaitable[None]]
    ) -> Any:
        """A plain (non-durable) subscription to live events, e.g. to fan out to web clients."""
        return await self.nc.subscribe(subject, cb=callback)

    # -- lifecycle ----------------------------------------------------------------------

    async def close(self) -> None:
        """Stop serving, let in-flight requests finish, stop consumers, drain the connection."""
        for micro in self._micro:
            with contextlib.suppress(Exception):
                await micro.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await cancel_all(self._consumers)
        # A pull subscription holds drain() until its timeout (nats-py's fetch leaves its
        # queue unfinished); unacknowledged messages are redelivered anyway.
        for sub in self._pull_subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        self.metrics.bus_connected.set(0)


def _validation_error(exc: ValidationError) -> ValidationFailed:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    return ValidationFailed(f"invalid request: {first['msg']}", field=field)


async def _respond_error(request: MicroRequest, exc: MetalbusError) -> None:
    await request.respond_error(
        str(exc.http_status), exc.message, data=json.dumps(exc.to_dict()).encode()
    )


def _decode_reply(command: Command[Any, Resp], msg: Msg) -> Resp:
    headers = msg.headers or {}
    if ERROR_CODE_HEADER in headers:
        try:
            body = json.loads(msg.data) if msg.data else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict) or "code" not in body:
            body = {"code": "internal_error", "message": headers.get(ERROR_HEADER, "error")}
        raise MetalbusError.from_dict(body)
    try:
        return command.response.model_validate_json(msg.data)
    except ValidationError as exc:
        raise InternalError(
            f"{command.service} answered {command.action} with a malformed reply"
        ) from exc
