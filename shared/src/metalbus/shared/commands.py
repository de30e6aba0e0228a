"""Request/reply commands: one typed definition shared by the caller and the server.

A :class:`Command` names the owning service, the action, the request and response
models and a default timeout. The caller does ``await bus.request(PING("ipam"), Empty())``;
the owning service registers a handler for the same object. Neither spells a subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from . import subjects

Req = TypeVar("Req", bound=BaseModel)
Resp = TypeVar("Resp", bound=BaseModel)


@dataclass(frozen=True)
class Command(Generic[Req, Resp]):
    """A request/reply endpoint of a service."""

    service: str
    action: str
    request: type[Req]
    response: type[Resp]
    timeout: float = 5.0
    description: str = ""

    @property
    def subject(self) -> str:
        """The NATS subject the command is served on."""
        return subjects.command_subject(self.service, self.action)


class Empty(BaseModel):
    """A request or response that carries nothing."""

    model_config = ConfigDict(extra="forbid")


class Pong(BaseModel):
    """Answer to ``ping``: which replica answered, and when."""

    service: str
    instance: str
    version: str
    time: datetime


class ReadinessCheck(BaseModel):
    """One readiness check: its name, whether it passed, and why not."""

    name: str
    ok: bool
    detail: str = ""


class ServiceStatus(BaseModel):
    """Answer to ``status``: health of the replica that answered."""

    service: str
    instance: str
    version: str
    started_at: datetime
    ready: bool
    checks: list[ReadinessCheck] = Field(default_factory=list)


def ping(service: str) -> Command[Empty, Pong]:
    """The trivial command every service answers: a round trip and the replica's identity."""
    return Command(service, "ping", Empty, Pong, timeout=2.0, description="Round trip to a replica")


def status(service: str) -> Command[Empty, ServiceStatus]:
    """The readiness report every service answers."""
    return Command(
        service,
        "status",
        Empty,
        ServiceStatus,
        timeout=3.0,
        description="Readiness of a replica (bus, database, event stream)",
    )
