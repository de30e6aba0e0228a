"""The api service's tables and its public shapes (Base / Create / table / Public)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field, SQLModel

from metalbus.shared.contract.api import Role
from metalbus.shared.contract.ipam import UtcTime

from .devices.models import DEVICE_TABLES
from .machines.models import MACHINE_TABLES
from .webhooks.models import WEBHOOK_TABLES


class TokenBase(SQLModel):
    name: str = Field(min_length=1, max_length=100, description="what the token is for")
    role: Role = Field(description="admin, operator or readonly")


class TokenCreate(TokenBase):
    """Body of ``POST /api/v1/tokens``."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    expires_in_days: float | None = Field(
        default=None, gt=0, le=3650, description="lifetime; omitted means it never expires"
    )


class ApiToken(TokenBase, table=True):
    """A stored token: only a hash of its secret is kept."""

    __tablename__ = "api_token"

    id: str = Field(primary_key=True, max_length=32)
    secret_hash: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    created_by: str | None = Field(default=None, max_length=32)


class TokenPublic(TokenBase):
    """A token as the API shows it (never its secret)."""

    id: str
    # UtcTime: SQLite reads the stamps back naive; RFC 3339 (the schema) wants an offset
    created_at: UtcTime
    expires_at: UtcTime | None
    revoked_at: UtcTime | None
    created_by: str | None


class TokenIssued(TokenPublic):
    """The answer to creating a token: the only time its secret is shown."""

    token: str = Field(description="the bearer token; shown once, store it now")


class EventRecord(SQLModel, table=True):
    """One event of any service, as the event log keeps it."""

    __tablename__ = "api_event_log"

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64, unique=True)
    type: str = Field(max_length=255, index=True)
    source: str = Field(max_length=255)
    subject: str | None = Field(default=None, max_length=255, index=True)
    time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    data: str = Field(sa_column=Column(Text, nullable=False))


class EventPublic(BaseModel):
    """An event in the log: the CloudEvents envelope plus its position in the log."""

    seq: int
    id: str
    type: str
    source: str
    subject: str | None
    time: datetime
    data: dict[str, Any]


class EventPage(BaseModel):
    """One page of the event log; pass ``next`` back as ``before`` (or ``after``) for the next."""

    items: list[EventPublic]
    next: int | None = Field(default=None, description="cursor of the next page, null at the end")


API_TABLES = (
    frozenset({ApiToken.__tablename__, EventRecord.__tablename__})
    | MACHINE_TABLES
    | WEBHOOK_TABLES
    | DEVICE_TABLES
)


class ProblemError(BaseModel):
    """One input error inside a problem document."""

    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document: every error the API returns has this shape."""

    type: str = Field(description="urn:metalbus:problem:<code>")
    title: str
    status: int
    detail: str
    instance: str = Field(description="the request path")
    code: str = Field(description="stable error code (metalbus.shared.errors)")
    field: str | None = Field(default=None, description="the input at fault, e.g. body.role")
    errors: list[ProblemError] | None = None
    request_id: str | None = None
    trace_id: str | None = None
