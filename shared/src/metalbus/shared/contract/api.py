"""Events the api service publishes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from ..events import EventPayload, event


class Role(StrEnum):
    """What an API token may do. Each role includes the ones below it."""

    ADMIN = "admin"
    OPERATOR = "operator"
    READONLY = "readonly"

    @property
    def rank(self) -> int:
        """Higher ranks may do everything lower ranks may."""
        return {Role.READONLY: 0, Role.OPERATOR: 1, Role.ADMIN: 2}[self]


@event("api", "token", "created")
class TokenCreated(EventPayload):
    """An API token was created (the secret is never in the event)."""

    token_id: str
    name: str
    role: Role
    expires_at: datetime | None = None
    created_by: str | None = None


@event("api", "token", "revoked")
class TokenRevoked(EventPayload):
    """An API token was revoked and no longer authenticates."""

    token_id: str
    revoked_by: str | None = None
