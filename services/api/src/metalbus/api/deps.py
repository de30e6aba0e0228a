"""FastAPI dependencies, as ``Annotated`` aliases the routes use.

They are all ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool,
two thread hops per request for look-ups that never block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.bus import Bus
from metalbus.shared.contract.api import Role
from metalbus.shared.db import Database
from metalbus.shared.errors import Forbidden, Unauthorized
from metalbus.shared.runtime import ServiceRuntime

from .eventlog import EventHub
from .settings import ApiSettings
from .tokens import Principal, TokenChecker

_bearer = HTTPBearer(auto_error=False, description="an API token: mb_<id>.<secret>")


async def get_runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def get_bus(request: Request) -> Bus:
    return request.app.state.runtime.bus  # type: ignore[no-any-return]


async def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_hub(request: Request) -> EventHub:
    return request.app.state.hub  # type: ignore[no-any-return]


async def get_checker(request: Request) -> TokenChecker:
    return request.app.state.tokens  # type: ignore[no-any-return]


async def get_database(request: Request) -> Database:
    return request.app.state.runtime.db  # type: ignore[no-any-return]


async def read_session(
    runtime: Annotated[ServiceRuntime, Depends(get_runtime)],
) -> AsyncIterator[AsyncSession]:
    async with runtime.db.read() as session:
        yield session


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
BusDep = Annotated[Bus, Depends(get_bus)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
HubDep = Annotated[EventHub, Depends(get_hub)]
# Writes open their transaction inside the route (``async with db.transaction()``), so the
# commit happens before the response is sent: a yield-dependency's teardown may run after it.
DatabaseDep = Annotated[Database, Depends(get_database)]
ReadSession = Annotated[AsyncSession, Depends(read_session)]
CheckerDep = Annotated[TokenChecker, Depends(get_checker)]


async def authenticate(
    checker: CheckerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``. Raises Unauthorized."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("an API token is required (Authorization: Bearer <token>)")
    return await checker.check(credentials.credentials)


def require(role: Role) -> object:
    """A dependency that lets through principals holding ``role`` (or higher)."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.may(role):
            raise Forbidden(
                f"this needs the {role.value} role; the token has {principal.role.value}"
            )
        return principal

    return Depends(check)


Reader = Annotated[Principal, require(Role.READONLY)]
Operator = Annotated[Principal, require(Role.OPERATOR)]
Admin = Annotated[Principal, require(Role.ADMIN)]
