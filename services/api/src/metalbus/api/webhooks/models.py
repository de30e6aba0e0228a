"""Webhook tables and their public shapes (Base / Create / Update / table / Public).

A subscription's signing secret is stored sealed (:mod:`metalbus.shared.secrets`) and is
shown once, in the answer to the request that set it; no other answer carries it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr, StringConstraints
from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from .patterns import check_pattern

SECRET_MIN, SECRET_MAX = 24, 200


def check_url(value: str) -> str:
    """A receiver URL: absolute http(s), a host, no credentials, no fragment.

    Credentials in a URL would be a secret shown in every listing and log; the signature
    is how a receiver authenticates metalbus.
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (the signature authenticates metalbus)")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    if port == 0:
        raise ValueError("port 0 is not a port")
    return value


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what logs show (paths and queries may hold tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


# Validated one by one, so an error names the entry at fault (body.event_types.1).
EventPattern = Annotated[
    str, StringConstraints(min_length=1, max_length=255), AfterValidator(check_pattern)
]
ReceiverUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=2048), AfterValidator(check_url)
]


def _unique(patterns: list[str] | None) -> list[str] | None:
    return None if patterns is None else list(dict.fromkeys(patterns))  # order kept


class WebhookCreate(BaseModel):
    """Body of ``POST /api/v1/webhooks``."""

    model_config = ConfigDict(extra="forbid")

    url: ReceiverUrl = Field(description="where events are POSTed")
    event_types: Annotated[list[EventPattern], AfterValidator(_unique)] = Field(
        min_length=1,
        max_length=100,
        description="event types to send: `ipam.subnet.created.v1`, a prefix `api.machine.*` "
        "(the service may be left out: `machine.*`), or `*` for every event",
    )
    description: str = Field("", max_length=500)
    active: bool = Field(True, description="inactive subscriptions get no new deliveries")
    secret: SecretStr | None = Field(
        None,
        min_length=SECRET_MIN,
        max_length=SECRET_MAX,
        description="the HMAC signing secret; omitted: one is made. Shown once in the answer",
    )


class WebhookUpdate(BaseModel):
    """Body of ``PATCH /api/v1/webhooks/{id}``: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    url: ReceiverUrl | None = None
    event_types: Annotated[list[EventPattern] | None, AfterValidator(_unique)] = Field(
        None, min_length=1, max_length=100
    )
    description: str | None = Field(None, max_length=500)
    active: bool | None = None
    secret: SecretStr | None = Field(
        None,
        min_length=SECRET_MIN,
        max_length=SECRET_MAX,
        description="a new signing secret; it takes effect at the next attempt",
    )


class Webhook(SQLModel, table=True):
    """A subscription: a URL and the event types it is sent."""

    __tablename__ = "api_webhook"

    id: str = Field(primary_key=True, max_length=32)
    url: str = Field(max_length=2048)
    event_types: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of patterns
    description: str = Field(default="", max_length=500)
    active: bool = True
    secret: str = Field(sa_column=Column(Text, nullable=False))  # sealed, never shown again
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    created_by: str | None = Field(default=None, max_length=32)


class WebhookPublic(BaseModel):
    """A subscription as the API shows it (never its secret)."""

    id: str
    url: str
    event_types: list[str]
    description: str
    active: bool
    created_at: datetime
    updated_at: datetime
    created_by: str | None


class WebhookWithSecret(WebhookPublic):
    """The answer to creating a subscription or setting its secret: the only time it shows."""

    secret: str = Field(description="the signing secret; shown once, store it now")


class DeliveryStatus(StrEnum):
    """Where a delivery stands."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WebhookDelivery(SQLModel, table=True):
    """One event to send to one subscription, until it succeeds or is given up."""

    __tablename__ = "api_webhook_delivery"
    __table_args__ = (UniqueConstraint("webhook_id", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("api_webhook.id", ondelete="CASCADE"), nullable=False
        )
    )
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=255)
    body: str = Field(sa_column=Column(Text, nullable=False))  # the envelope, as sent
    status: DeliveryStatus = Field(sa_column=Column(String(16), nullable=False, index=True))
    attempts: int = 0
    attempt_limit: int = Field(description="the delivery fails after this many attempts")
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    next_attempt_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )
    # A replica sending the delivery holds it until then (a crashed one's hold runs out).
    leased_until: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    leased_by: str | None = Field(default=None, max_length=255)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    completed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class WebhookAttempt(SQLModel, table=True):
    """One HTTP attempt of a delivery: what came back, or why nothing did."""

    __tablename__ = "api_webhook_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("api_webhook_delivery.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    number: int
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    duration_ms: float
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)


class AttemptPublic(BaseModel):
    """One attempt as the API shows it."""

    number: int
    started_at: datetime
    duration_ms: float
    status_code: int | None = Field(description="the receiver's HTTP status, null if none came")
    error: str | None = Field(description="why the attempt failed, null when it succeeded")


class DeliveryPublic(BaseModel):
    """A delivery and its attempts."""

    id: int
    webhook_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="when the next attempt is due (pending)")
    expires_at: datetime
    created_at: datetime
    completed_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    event: dict[str, Any] = Field(description="the CloudEvents envelope that is POSTed")
    attempt_log: list[AttemptPublic]


class DeliveryPage(BaseModel):
    """Deliveries newest first; pass ``next`` back as ``before`` for the next page."""

    items: list[DeliveryPublic]
    next: int | None = None


WEBHOOK_TABLES = frozenset(
    {Webhook.__tablename__, WebhookDelivery.__tablename__, WebhookAttempt.__tablename__}
)
