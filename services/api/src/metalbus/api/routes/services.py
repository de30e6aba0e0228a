"""``/api/v1/services``: is every service up, and which replica answers?"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter

from metalbus.shared import subjects
from metalbus.shared.commands import Empty, Pong, ReadinessCheck, ServiceStatus, ping, status
from metalbus.shared.errors import MetalbusError

from ..deps import BusDep, Reader
from . import API_PREFIX, problem_responses

router = APIRouter(
    prefix=API_PREFIX, tags=["services"], responses=problem_responses(401, 403, 422, 503, 504)
)
# Literal of a tuple is the Literal of its members: one list of services, in shared.
ServiceName = Literal[subjects.SERVICES]  # type: ignore[valid-type]


@router.get(
    "/services",
    response_model=list[ServiceStatus],
    summary="Readiness of every service (one replica each)",
)
async def list_services(_: Reader, bus: BusDep) -> list[ServiceStatus]:
    async def one(service: str) -> ServiceStatus:
        try:
            return await bus.request(status(service), Empty())
        except MetalbusError as exc:
            return ServiceStatus(
                service=service,
                instance="",
                version="",
                started_at="1970-01-01T00:00:00Z",
                ready=False,
                checks=[ReadinessCheck(name="reachable", ok=False, detail=exc.message)],
            )

    return list(await asyncio.gather(*(one(s) for s in subjects.SERVICES)))


@router.get("/services/{service}", response_model=ServiceStatus, summary="Readiness of one service")
async def service_status(service: ServiceName, _: Reader, bus: BusDep) -> ServiceStatus:
    return await bus.request(status(service), Empty())


@router.get(
    "/services/{service}/ping",
    response_model=Pong,
    summary="A round trip over the bus to one replica of a service",
)
async def service_ping(service: ServiceName, _: Reader, bus: BusDep) -> Pong:
    return await bus.request(ping(service), Empty())
