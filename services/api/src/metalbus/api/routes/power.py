"""``/api/v1/power``: BMCs and power actions, forwarded to the power service over the bus.

Reads need ``readonly``, changes and power actions ``operator``. The api keeps nothing: the
power service validates driver settings against the schemas ``GET /power/drivers`` shows,
seals the secrets and never sends them back. A fault's ``field`` is renamed after where the
client put it (``settings.password`` becomes ``body.settings.password``, ``id`` ``path.id``).
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict

from metalbus.shared.commands import Empty
from metalbus.shared.contract import power as p

from ..deps import BusDep, Operator, Reader
from . import API_PREFIX, problem_responses
from .forwarding import PATH, QUERY, Where, forward

router = APIRouter(
    prefix=f"{API_PREFIX}/power",
    tags=["power"],
    responses=problem_responses(401, 403, 404, 422, 503, 504),
)
Req = TypeVar("Req", bound=BaseModel)
Resp = TypeVar("Resp", bound=BaseModel)
BmcId = Annotated[int, Path(ge=1, description="the BMC's id")]
IN_BODY = Where("body", id="path.id", changes="body")
"""The request is the body; its id, if any, is in the path."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PowerOnBody(_Body):
    """Power on; with ``boot``, set the boot device first (a machine already on stays on)."""

    boot: p.BootOverride | None = None


class PowerOffBody(_Body):
    """Power off at once, or with ``soft`` through the OS."""

    soft: bool = False


class BootDeviceBody(_Body):
    """The next boot device."""

    boot: p.BootOverride


@router.get("/drivers", response_model=p.DriverList, summary="Drivers and their settings schemas")
async def list_drivers(_: Reader, bus: BusDep) -> p.DriverList:
    return await forward(bus, p.DRIVER_LIST, Empty(), IN_BODY)


@router.post(
    "/bmcs",
    status_code=status.HTTP_201_CREATED,
    response_model=p.Bmc,
    summary="Add a BMC (its secrets are never shown again)",
)
async def create_bmc(body: p.BmcCreate, _: Operator, bus: BusDep) -> p.Bmc:
    return await forward(bus, p.BMC_CREATE, body, IN_BODY)


@router.get("/bmcs", response_model=p.Page[p.Bmc], summary="BMCs, by id")
async def list_bmcs(_: Reader, bus: BusDep, query: Annotated[p.BmcQuery, Query()]) -> p.Page[p.Bmc]:
    return await forward(bus, p.BMC_LIST, query, QUERY)


@router.get("/bmcs/{bmc_id}", response_model=p.Bmc, summary="One BMC")
async def get_bmc(bmc_id: BmcId, _: Reader, bus: BusDep) -> p.Bmc:
    return await forward(bus, p.BMC_GET, p.ById(id=bmc_id), PATH)


@router.patch(
    "/bmcs/{bmc_id}",
    response_model=p.Bmc,
    summary="Change a BMC (settings not named are kept, secrets included)",
)
async def update_bmc(bmc_id: BmcId, body: p.BmcUpdate, _: Operator, bus: BusDep) -> p.Bmc:
    request = p.UpdateRequest[p.BmcUpdate](id=bmc_id, changes=body)
    return await forward(bus, p.BMC_UPDATE, request, IN_BODY)


@router.delete("/bmcs/{bmc_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Forget a BMC")
async def delete_bmc(bmc_id: BmcId, _: Operator, bus: BusDep) -> Response:
    await forward(bus, p.BMC_DELETE, p.ById(id=bmc_id), PATH)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/bmcs/{bmc_id}/on", response_model=p.PowerResult, summary="Power on")
async def power_on(
    bmc_id: BmcId, _: Operator, bus: BusDep, body: PowerOnBody | None = None
) -> p.PowerResult:
    request = p.PowerOnRequest(id=bmc_id, boot=body.boot if body else None)
    return await forward(bus, p.POWER_ON, request, IN_BODY)


@router.post("/bmcs/{bmc_id}/off", response_model=p.PowerResult, summary="Power off")
async def power_off(
    bmc_id: BmcId, _: Operator, bus: BusDep, body: PowerOffBody | None = None
) -> p.PowerResult:
    request = p.PowerOffRequest(id=bmc_id, soft=body.soft if body else False)
    return await forward(bus, p.POWER_OFF, request, IN_BODY)


@router.post("/bmcs/{bmc_id}/cycle", response_model=p.PowerResult, summary="Power cycle")
async def power_cycle(bmc_id: BmcId, _: Operator, bus: BusDep) -> p.PowerResult:
    return await forward(bus, p.POWER_CYCLE, p.ById(id=bmc_id), PATH)


@router.post(
    "/bmcs/{bmc_id}/query", response_model=p.PowerResult, summary="Ask the BMC for its state now"
)
async def power_query(bmc_id: BmcId, _: Reader, bus: BusDep) -> p.PowerResult:
    return await forward(bus, p.POWER_QUERY, p.ById(id=bmc_id), PATH)


@router.post(
    "/bmcs/{bmc_id}/boot-device", response_model=p.PowerResult, summary="Set the next boot device"
)
async def set_boot_device(
    bmc_id: BmcId, body: BootDeviceBody, _: Operator, bus: BusDep
) -> p.PowerResult:
    request = p.SetBootDeviceRequest(id=bmc_id, boot=body.boot)
    return await forward(bus, p.SET_BOOT_DEVICE, request, IN_BODY)
