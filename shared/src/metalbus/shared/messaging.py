"""Tables every service carries for reliable messaging: the outbox and the processed-event log.

They live in each service's own database (created by the ``shared`` migration branch,
which every service runs alongside its own).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field, SQLModel


class OutboxMessage(SQLModel, table=True):
    """An event committed with the state change it describes, waiting for the relay."""

    __tablename__ = "metalbus_outbox"

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64, unique=True)
    subject: str = Field(max_length=255)
    event_type: str = Field(max_length=255)
    body: str = Field(sa_column=Column(Text, nullable=False))
    headers: str = Field(sa_column=Column(Text, nullable=False), default="{}")
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ProcessedEvent(SQLModel, table=True):
    """An event a durable consumer has applied; a second delivery is recognised and skipped."""

    __tablename__ = "metalbus_processed_event"

    consumer: str = Field(max_length=128, primary_key=True)
    event_id: str = Field(max_length=64, primary_key=True)
    processed_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )


MESSAGING_TABLES = frozenset({OutboxMessage.__tablename__, ProcessedEvent.__tablename__})
