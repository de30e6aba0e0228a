"""The power service's table: one row per BMC, its settings, sealed secrets and last state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field, SQLModel


class PowerBmc(SQLModel, table=True):
    """A BMC: the driver's settings in clear, its secrets sealed, what polling learned."""

    __tablename__ = "power_bmc"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=63, unique=True)
    driver: str = Field(max_length=16)
    settings: str = Field(sa_column=Column(Text, nullable=False))
    secrets: str = Field(sa_column=Column(Text, nullable=False), default="")
    host: str | None = Field(default=None, max_length=255)
    machine_id: str | None = Field(default=None, max_length=64, index=True)
    poll: bool = True
    power_state: str = Field(default="unknown", max_length=16)
    power_state_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reachable: bool = True
    failures: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


POWER_TABLES = frozenset({PowerBmc.__tablename__})
