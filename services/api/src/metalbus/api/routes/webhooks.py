"""``/api/v1/webhooks``: subscriptions, their deliveries and redelivery (admin only).

Admin only, reading included: a receiver URL can itself be a credential (a token in its
path or query), so only those who may change subscriptions see them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlmodel import col, select

from metalbus.shared.contract.ipam import MAX_ID

from ..deps import Admin, DatabaseDep, ReadSession
from ..webhooks import store
from ..webhooks.engine import WebhookEngine
from ..webhooks.models import (
    DeliveryPage,
    DeliveryPublic,
    DeliveryStatus,
    Webhook,
    WebhookCreate,
    WebhookPublic,
    WebhookUpdate,
    WebhookWithSecret,
)
from . import API_PREFIX, problem_responses
from .forwarding import IdPath

router = APIRouter(
    prefix=API_PREFIX, tags=["webhooks"], responses=problem_responses(401, 403, 404, 422)
)


async def get_engine(request: Request) -> WebhookEngine:
    return request.app.state.webhooks  # type: ignore[no-any-return]


EngineDep = Annotated[WebhookEngine, Depends(get_engine)]


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookWithSecret,
    summary="Subscribe a URL to event types (the signing secret is shown once)",
    responses=problem_responses(503),
)
async def create_webhook(
    body: WebhookCreate, principal: Admin, db: DatabaseDep, engine: EngineDep
) -> WebhookWithSecret:
    box = store.need_box(engine.box)
    async with db.transaction() as session:
        row, secret = await store.create(session, box, body, principal.token_id)
    return WebhookWithSecret(**store.to_public(row).model_dump(), secret=secret)


@router.get("/webhooks", response_model=list[WebhookPublic], summary="List subscriptions")
async def list_webhooks(_: Admin, session: ReadSession) -> list[WebhookPublic]:
    rows = (await session.exec(select(Webhook).order_by(col(Webhook.created_at)))).all()
    return [store.to_public(r) for r in rows]


@router.get("/webhooks/{webhook_id}", response_model=WebhookPublic, summary="One subscription")
async def get_webhook(webhook_id: str, _: Admin, session: ReadSession) -> WebhookPublic:
    return store.to_public(await store.get(session, webhook_id))


@router.patch(
    "/webhooks/{webhook_id}",
    response_model=WebhookPublic | WebhookWithSecret,
    summary="Change a subscription (a new secret is echoed once, like on creation)",
    responses=problem_responses(503),
)
async def update_webhook(
    webhook_id: str, body: WebhookUpdate, _: Admin, db: DatabaseDep, engine: EngineDep
) -> WebhookPublic | WebhookWithSecret:
    async with db.transaction() as session:
        row = await store.update(session, engine.box, webhook_id, body)
    public = store.to_public(row)
    if body.secret is not None:
        return WebhookWithSecret(**public.model_dump(), secret=body.secret.get_secret_value())
    return public


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a subscription and its delivery log",
)
async def delete_webhook(webhook_id: str, _: Admin, db: DatabaseDep) -> Response:
    async with db.transaction() as session:
        await store.delete(session, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    summary="Deliveries of a subscription with every attempt, newest first",
)
async def list_deliveries(
    webhook_id: str,
    _: Admin,
    session: ReadSession,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="cursor: deliveries older")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveryPage:
    await store.get(session, webhook_id)
    rows, more = await store.list_deliveries(
        session, webhook_id, status=status_, before=before, limit=limit
    )
    items = await store.delivery_public(session, rows)
    return DeliveryPage(items=items, next=items[-1].id if more and items else None)


@router.get(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}",
    response_model=DeliveryPublic,
    summary="One delivery with every attempt",
)
async def get_delivery(
    webhook_id: str, delivery_id: IdPath, _: Admin, session: ReadSession
) -> DeliveryPublic:
    row = await store.get_delivery(session, webhook_id, delivery_id)
    return (await store.delivery_public(session, [row]))[0]


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryPublic,
    summary="Send a succeeded or failed delivery again (a fresh budget of attempts)",
    responses=problem_responses(409),
)
async def redeliver(
    webhook_id: str, delivery_id: IdPath, _: Admin, db: DatabaseDep, engine: EngineDep
) -> DeliveryPublic:
    s = engine.settings
    async with db.transaction() as session:
        row = await store.redeliver(
            session,
            webhook_id,
            delivery_id,
            attempt_limit=s.webhook_max_attempts,
            max_age=timedelta(seconds=s.webhook_max_age_s),
        )
        public = (await store.delivery_public(session, [row]))[0]
    engine.wake()
    return public
