"""API tokens: issuing, checking, revoking. Only a SHA-256 of each secret is stored.

A token reads ``mb_<id>.<secret>``: the id finds the row, the secret is compared with its
hash in constant time. Secrets are 256 random bits, so a fast hash is the right tool (a
slow password hash buys nothing against a secret nobody can guess).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared import outbox
from metalbus.shared.contract.api import Role, TokenCreated, TokenRevoked
from metalbus.shared.db import Database
from metalbus.shared.errors import NotFound, Unauthorized
from metalbus.shared.events import as_utc, new_event, utcnow

from .models import ApiToken

_TOKEN = re.compile(r"^mb_([0-9a-f]{12})\.([A-Za-z0-9_-]{20,100})$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, name and role."""

    token_id: str
    name: str
    role: Role
    expires_at: datetime | None

    def may(self, role: Role) -> bool:
        """Whether this principal holds ``role`` or a higher one."""
        return self.role.rank >= role.rank


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def make_token() -> tuple[str, str, str]:
    """A fresh (token id, secret, bearer string)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return token_id, secret, f"mb_{token_id}.{secret}"


def parse_token(bearer: str) -> tuple[str, str]:
    """Split a bearer string into (id, secret). Raises Unauthorized when it is not one."""
    match = _TOKEN.match(bearer)
    if not match:
        raise Unauthorized("the token is malformed")
    return match.group(1), match.group(2)


async def issue(
    session: AsyncSession,
    *,
    name: str,
    role: Role,
    expires_in: timedelta | None = None,
    created_by: str | None = None,
    bearer: str | None = None,
) -> tuple[ApiToken, str]:
    """Store a new token (and its event, in the same transaction). Returns (row, bearer string).

    ``bearer`` installs a token chosen elsewhere (a cluster secret) instead of a random one.
    """
    if bearer is None:
        token_id, secret, bearer = make_token()
    else:
        token_id, secret = parse_token(bearer)
    now = utcnow()
    row = ApiToken(
        id=token_id,
        name=name,
        role=role,
        secret_hash=_hash(secret),
        created_at=now,
        expires_at=now + expires_in if expires_in else None,
        created_by=created_by,
    )
    session.add(row)
    outbox.stage(
        session,
        new_event(
            TokenCreated(
                token_id=token_id,
                name=name,
                role=role,
                expires_at=row.expires_at,
                created_by=created_by,
            ),
            subject=token_id,
        ),
    )
    return row, bearer


async def revoke(session: AsyncSession, token_id: str, *, revoked_by: str | None) -> ApiToken:
    """Revoke a token (idempotent: revoking twice keeps the first time)."""
    row = await session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"no token {token_id}", field="token_id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        outbox.stage(
            session,
            new_event(TokenRevoked(token_id=token_id, revoked_by=revoked_by), subject=token_id),
        )
    return row


async def has_active_admin(session: AsyncSession) -> bool:
    """Whether some admin token still works (decides whether to bootstrap one)."""
    now = utcnow()
    rows = (
        await session.exec(
            select(ApiToken).where(ApiToken.role == Role.ADMIN, col(ApiToken.revoked_at).is_(None))
        )
    ).all()
    return any(r.expires_at is None or as_utc(r.expires_at) > now for r in rows)


class TokenChecker:
    """Checks bearer tokens, keeping good answers for ``cache_s`` seconds.

    The cache keeps the per-request cost at a dictionary look-up; a revocation made on this
    replica takes effect at once, one made on another replica within ``cache_s``.
    """

    def __init__(self, db: Database, cache_s: float) -> None:
        self.db = db
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def check(self, bearer: str) -> Principal:
        """The principal behind a bearer string. Raises Unauthorized."""
        cached = self._cache.get(bearer)
        now = time.monotonic()
        if cached and cached[0] > now:
            principal = cached[1]
            if principal.expires_at is None or principal.expires_at > utcnow():
                return principal
        token_id, secret = parse_token(bearer)
        async with self.db.read() as session:
            row = await session.get(ApiToken, token_id)
        if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
            raise Unauthorized("the token is not valid")
        if row.revoked_at is not None:
            raise Unauthorized("the token was revoked")
        expires_at = as_utc(row.expires_at) if row.expires_at else None
        if expires_at is not None and expires_at <= utcnow():
            raise Unauthorized("the token has expired")
        principal = Principal(token_id=row.id, name=row.name, role=row.role, expires_at=expires_at)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[bearer] = (now + self.cache_s, principal)
        return principal

    def forget(self, token_id: str) -> None:
        """Drop a token from the cache (after revoking it here)."""
        for key in [k for k, (_, p) in self._cache.items() if p.token_id == token_id]:
            del self._cache[key]
