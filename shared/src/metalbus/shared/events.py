"""The event envelope (CloudEvents 1.0 attributes) and the registry of typed payloads.

An event payload is a pydantic model declared with :func:`event`::

    @event("ipam", "subnet", "created")
    class SubnetCreated(EventPayload):
        subnet_id: int
        cidr: str

which fixes its CloudEvents type (``io.metalbus.ipam.subnet.created.v1``) and its
subject (``metalbus.evt.ipam.subnet.created``). :func:`new_event` wraps a payload in an
:class:`Event`; :func:`decode_event` turns bytes from the bus back into a typed event.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import subjects
from .errors import ValidationFailed


class EventPayload(BaseModel):
    """Base of every event payload. Subclasses are registered with :func:`event`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_service: ClassVar[str]
    event_entity: ClassVar[str]
    event_name: ClassVar[str]
    event_version: ClassVar[int]

    @classmethod
    def event_type(cls) -> str:
        """CloudEvents type of this payload."""
        return subjects.event_type(
            cls.event_service, cls.event_entity, cls.event_name, cls.event_version
        )

    @classmethod
    def subject(cls) -> str:
        """NATS subject events with this payload are published on."""
        return subjects.event_subject(cls.event_service, cls.event_entity, cls.event_name)


PayloadT = TypeVar("PayloadT", bound=EventPayload)
AnyPayload = TypeVar("AnyPayload", bound=BaseModel)

EVENT_TYPES: dict[str, type[EventPayload]] = {}
"""Every registered payload model, by CloudEvents type."""


def event(
    service: str, entity: str, name: str, *, version: int = 1
) -> Callable[[type[PayloadT]], type[PayloadT]]:
    """Class decorator: register a payload model as the data of one event type."""

    def register(cls: type[PayloadT]) -> type[PayloadT]:
        cls.event_service = service
        cls.event_entity = entity
        cls.event_name = name
        cls.event_version = version
        type_ = cls.event_type()
        cls.subject()  # validates the tokens
        existing = EVENT_TYPES.get(type_)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"event type {type_} is already registered by {existing.__qualname__}")
        EVENT_TYPES[type_] = cls
        return cls

    return register


def new_event_id() -> str:
    """A fresh event id (a UUID, text form)."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A datetime read back from the database, as aware UTC.

    SQLite returns naive datetimes for timezone-aware columns; metalbus stores UTC only.
    """
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Event(BaseModel, Generic[AnyPayload]):
    """A CloudEvents 1.0 event (structured JSON mode) around a typed payload.

    Attributes:
        id: unique per event; also the JetStream ``Nats-Msg-Id`` and the key consumers
            de-duplicate on.
        source: the emitting service, ``/metalbus/<service>``.
        type: ``io.metalbus.<service>.<entity>.<event>.v<n>``.
        subject: the id of the object the event is about (CloudEvents ``subject``).
        time: when the fact happened (UTC).
        data: the payload.
    """

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=new_event_id, min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: datetime = Field(default_factory=utcnow)
    datacontenttype: Literal["application/json"] = "application/json"
    data: AnyPayload

    @property
    def nats_subject(self) -> str:
        """The NATS subject this event travels on."""
        return subjects.subject_for_type(self.type)

    def to_bytes(self) -> bytes:
        """The JSON bytes that go on the wire."""
        return self.model_dump_json().encode()


def new_event(
    payload: PayloadT, *, subject: str | None = None, source: str | None = None
) -> Event[PayloadT]:
    """Wrap a payload in an envelope; the source defaults to the payload's service."""
    # Parametrised at run time so the envelope validates and serialises the concrete payload.
    envelope_type: Any = Event.__class_getitem__(type(payload))
    envelope: Event[PayloadT] = envelope_type(
        source=source or subjects.event_source(payload.event_service),
        type=payload.event_type(),
        subject=subject,
        data=payload,
    )
    return envelope


class RawEvent(BaseModel):
    """An envelope whose payload was not decoded (an event type this process does not know)."""

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: datetime
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)


def decode_raw(raw: bytes) -> RawEvent:
    """Parse the envelope only. Raises ValidationFailed on anything that is not an event."""
    try:
        return RawEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise ValidationFailed(f"not a metalbus event: {exc.errors()[0]['msg']}") from exc


def decode_event(raw: bytes) -> Event[EventPayload]:
    """Parse an event and validate its payload against the registered model.

    Raises:
        ValidationFailed: not an envelope, an unknown type, or a payload that does not match.
    """
    envelope = decode_raw(raw)
    model = EVENT_TYPES.get(envelope.type)
    if model is None:
        raise ValidationFailed(f"unknown event type {envelope.type}", field="type")
    try:
        return Event[model].model_validate(envelope.model_dump())  # type: ignore[valid-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValidationFailed(
            f"event {envelope.id} of type {envelope.type} has a bad payload: {first['msg']}",
            field=".".join(str(p) for p in first["loc"]),
        ) from exc
