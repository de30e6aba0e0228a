"""Subscriptions and deliveries in the database: every write runs in the caller's transaction."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.errors import Conflict, NotFound, ServiceUnavailable
from metalbus.shared.events import RawEvent, as_utc, utcnow
from metalbus.shared.secrets import SecretBox

from .models import (
    AttemptPublic,
    DeliveryPublic,
    DeliveryStatus,
    Webhook,
    WebhookAttempt,
    WebhookCreate,
    WebhookDelivery,
    WebhookPublic,
    WebhookUpdate,
)
from .patterns import matches_any
from .signing import new_secret


def need_box(box: SecretBox | None) -> SecretBox:
    """The key that seals signing secrets; without one, webhooks cannot be written."""
    if box is None:
        raise ServiceUnavailable(
            "webhooks need a key to keep their secrets: set METALBUS_API_SECRET_KEY "
            "(or METALBUS_API_SECRET_KEY_FILE)"
        )
    return box


def to_public(row: Webhook) -> WebhookPublic:
    """A subscription row as the API shows it."""
    return WebhookPublic(
        id=row.id,
        url=row.url,
        event_types=json.loads(row.event_types),
        description=row.description,
        active=row.active,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        created_by=row.created_by,
    )


async def create(
    session: AsyncSession, box: SecretBox, body: WebhookCreate, created_by: str | None
) -> tuple[Webhook, str]:
    """Store a subscription; returns it and its signing secret (made here when not given)."""
    secret = body.secret.get_secret_value() if body.secret else new_secret()
    now = utcnow()
    row = Webhook(
        id=secrets.token_hex(8),
        url=body.url,
        event_types=json.dumps(body.event_types),
        description=body.description,
        active=body.active,
        secret=box.seal({"secret": secret}),
        created_at=now,
        updated_at=now,
        created_by=created_by,
    )
    session.add(row)
    return row, secret


async def get(session: AsyncSession, webhook_id: str) -> Webhook:
    """One subscription. Raises NotFound."""
    row = await session.get(Webhook, webhook_id)
    if row is None:
        raise NotFound(f"no webhook {webhook_id}", field="webhook_id")
    return row


async def update(
    session: AsyncSession, box: SecretBox | None, webhook_id: str, body: WebhookUpdate
) -> Webhook:
    """Change the fields given. Raises NotFound, ServiceUnavailable (a secret without a key)."""
    row = await get(session, webhook_id)
    changes = body.model_dump(exclude_unset=True, exclude={"secret"})
    for name, value in changes.items():
        if value is None:
            continue  # an explicit null means "leave it" (none of these fields is nullable)
        setattr(row, name, json.dumps(value) if name == "event_types" else value)
    if body.secret is not None:
        row.secret = need_box(box).seal({"secret": body.secret.get_secret_value()})
    row.updated_at = utcnow()
    session.add(row)
    return row


async def delete(session: AsyncSession, webhook_id: str) -> None:
    """Remove a subscription with its deliveries. Raises NotFound."""
    row = await get(session, webhook_id)
    await session.delete(row)


async def add_deliveries(
    session: AsyncSession,
    event: RawEvent,
    *,
    attempt_limit: int,
    max_age: timedelta,
) -> int:
    """One pending delivery per active subscription that wants ``event``; returns how many.

    Runs inside the idempotent consumer's transaction, so a redelivered event adds nothing;
    the (webhook, event) unique key backs that up. A subscription only gets events that
    happened after it was made.
    """
    hooks = (await session.exec(select(Webhook).where(col(Webhook.active)))).all()
    now = utcnow()
    body = event.model_dump_json()
    added = 0
    for hook in hooks:
        if event.time < as_utc(hook.created_at):
            continue
        if not matches_any(json.loads(hook.event_types), event.type):
            continue
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                event_id=event.id,
                event_type=event.type,
                body=body,
                status=DeliveryStatus.PENDING,
                attempt_limit=attempt_limit,
                expires_at=now + max_age,
                next_attempt_at=now,
                created_at=now,
            )
        )
        added += 1
    return added


async def get_delivery(session: AsyncSession, webhook_id: str, delivery_id: int) -> WebhookDelivery:
    """One delivery of one subscription. Raises NotFound."""
    row = await session.get(WebhookDelivery, delivery_id)
    if row is None or row.webhook_id != webhook_id:
        raise NotFound(f"no delivery {delivery_id} of webhook {webhook_id}", field="delivery_id")
    return row


async def list_deliveries(
    session: AsyncSession,
    webhook_id: str,
    *,
    status: DeliveryStatus | None,
    before: int | None,
    limit: int,
) -> tuple[list[WebhookDelivery], bool]:
    """Deliveries newest first; returns the page and whether more follow."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        query = query.where(col(WebhookDelivery.id) < before)
    rows = list(
        (await session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit + 1))).all()
    )
    return rows[:limit], len(rows) > limit


async def delivery_public(
    session: AsyncSession, rows: Sequence[WebhookDelivery]
) -> list[DeliveryPublic]:
    """Deliveries with their attempt logs (one query for all of them)."""
    ids = [r.id for r in rows]
    attempts: dict[int, list[AttemptPublic]] = {i: [] for i in ids if i is not None}
    if ids:
        query = (
            select(WebhookAttempt)
            .where(col(WebhookAttempt.delivery_id).in_(ids))
            .order_by(col(WebhookAttempt.delivery_id), col(WebhookAttempt.number))
        )
        for a in (await session.exec(query)).all():
            attempts[a.delivery_id].append(
                AttemptPublic(
                    number=a.number,
                    started_at=as_utc(a.started_at),
                    duration_ms=a.duration_ms,
                    status_code=a.status_code,
                    error=a.error,
                )
            )
    out = []
    for r in rows:
        assert r.id is not None
        pending = r.status == DeliveryStatus.PENDING
        out.append(
            DeliveryPublic(
                id=r.id,
                webhook_id=r.webhook_id,
                event_id=r.event_id,
                event_type=r.event_type,
                status=r.status,
                attempts=r.attempts,
                next_attempt_at=as_utc(r.next_attempt_at) if pending else None,
                expires_at=as_utc(r.expires_at),
                created_at=as_utc(r.created_at),
                completed_at=as_utc(r.completed_at) if r.completed_at else None,
                last_status_code=r.last_status_code,
                last_error=r.last_error,
                event=json.loads(r.body),
                attempt_log=attempts[r.id],
            )
        )
    return out


async def redeliver(
    session: AsyncSession,
    webhook_id: str,
    delivery_id: int,
    *,
    attempt_limit: int,
    max_age: timedelta,
    now: datetime | None = None,
) -> WebhookDelivery:
    """Send a finished delivery again, with a fresh budget of attempts and age.

    Raises NotFound, Conflict (it is still pending: it will be sent anyway).
    """
    row = await get_delivery(session, webhook_id, delivery_id)
    if row.status == DeliveryStatus.PENDING:
        raise Conflict(
            f"delivery {delivery_id} is still pending; it is retried on its own",
            field="delivery_id",
        )
    now = now or utcnow()
    row.status = DeliveryStatus.PENDING
    row.attempt_limit = row.attempts + attempt_limit
    row.expires_at = now + max_age
    row.next_attempt_at = now
    row.completed_at = None
    session.add(row)
    return row
