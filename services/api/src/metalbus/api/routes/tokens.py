"""``/api/v1/tokens``: create, list and revoke API tokens (admin only), and ``/whoami``."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response, status
from sqlmodel import col, select

from .. import tokens
from ..deps import Admin, CheckerDep, DatabaseDep, Reader, ReadSession
from ..models import ApiToken, TokenCreate, TokenIssued, TokenPublic
from . import API_PREFIX, problem_responses

router = APIRouter(
    prefix=API_PREFIX, tags=["tokens"], responses=problem_responses(401, 403, 404, 422)
)


@router.get("/whoami", summary="The token making the request")
async def whoami(principal: Reader) -> dict[str, str | None]:
    return {
        "token_id": principal.token_id,
        "name": principal.name,
        "role": principal.role.value,
        "expires_at": principal.expires_at.isoformat() if principal.expires_at else None,
    }


@router.post(
    "/tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenIssued,
    summary="Create a token (its secret is shown once)",
)
async def create_token(body: TokenCreate, principal: Admin, db: DatabaseDep) -> TokenIssued:
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    async with db.transaction() as session:
        row, bearer = await tokens.issue(
            session,
            name=body.name,
            role=body.role,
            expires_in=expires,
            created_by=principal.token_id,
        )
    return TokenIssued(
        **TokenPublic.model_validate(row, from_attributes=True).model_dump(), token=bearer
    )


@router.get(
    "/tokens", response_model=list[TokenPublic], summary="List tokens (never their secrets)"
)
async def list_tokens(_: Admin, session: ReadSession) -> list[ApiToken]:
    return list((await session.exec(select(ApiToken).order_by(col(ApiToken.created_at)))).all())


@router.delete(
    "/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke a token"
)
async def revoke_token(
    token_id: str, principal: Admin, db: DatabaseDep, checker: CheckerDep
) -> Response:
    async with db.transaction() as session:
        await tokens.revoke(session, token_id, revoked_by=principal.token_id)
    checker.forget(token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
