"""Fabrics, VLANs, spaces, subnets, static routes and IP ranges: the ipam service's objects.

Every route forwards to ipam (the api keeps no ipam tables). The CRUD routes come from
:func:`.crud.add_routes`; the routes below them are the ones with a shape of their own:
the VLANs of one fabric and a subnet's statistics.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import Field

from metalbus.shared.contract.ipam import (
    FABRIC_CREATE,
    FABRIC_DELETE,
    FABRIC_GET,
    FABRIC_LIST,
    FABRIC_UPDATE,
    RANGE_CREATE,
    RANGE_DELETE,
    RANGE_GET,
    RANGE_LIST,
    RANGE_UPDATE,
    ROUTE_CREATE,
    ROUTE_DELETE,
    ROUTE_GET,
    ROUTE_LIST,
    ROUTE_UPDATE,
    SPACE_CREATE,
    SPACE_DELETE,
    SPACE_GET,
    SPACE_LIST,
    SPACE_UPDATE,
    SUBNET_CREATE,
    SUBNET_DELETE,
    SUBNET_GET,
    SUBNET_LIST,
    SUBNET_STATISTICS,
    SUBNET_UPDATE,
    VLAN_CREATE,
    VLAN_DELETE,
    VLAN_GET,
    VLAN_LIST,
    VLAN_UPDATE,
    ById,
    ObjectId,
    Page,
    PageRequest,
    StatisticsRequest,
    SubnetStatistics,
    Vlan,
    VlanCreate,
    VlanQuery,
)
from metalbus.shared.errors import ValidationFailed

from ...deps import BusDep, Operator, Reader
from .. import API_PREFIX, problem_responses
from ..forwarding import BODY, IdPath, Where, forward
from .crud import Kind, add_routes

ERRORS = problem_responses(401, 403, 404, 409, 422, 503, 504)


def _router(tag: str) -> APIRouter:
    return APIRouter(prefix=API_PREFIX, tags=[tag], responses=ERRORS)


# Kind(path, noun, create, get, list, update, delete[, force]): see .crud.
fabrics = _router("fabrics")
add_routes(
    fabrics,
    Kind(
        "/fabrics",
        "fabric",
        FABRIC_CREATE,
        FABRIC_GET,
        FABRIC_LIST,
        FABRIC_UPDATE,
        FABRIC_DELETE,
        force="delete the fabric's subnets too (without it, a fabric holding subnets stays)",
    ),
)

spaces = _router("spaces")
add_routes(
    spaces,
    Kind("/spaces", "space", SPACE_CREATE, SPACE_GET, SPACE_LIST, SPACE_UPDATE, SPACE_DELETE),
)

vlans = _router("vlans")
add_routes(
    vlans,
    Kind(
        "/vlans",
        "VLAN",
        VLAN_CREATE,
        VLAN_GET,
        VLAN_LIST,
        VLAN_UPDATE,
        VLAN_DELETE,
        force="delete the VLAN's subnets too (without it, a VLAN holding subnets stays)",
    ),
)

subnets = _router("subnets")
add_routes(
    subnets,
    Kind(
        "/subnets",
        "subnet",
        SUBNET_CREATE,
        SUBNET_GET,
        SUBNET_LIST,
        SUBNET_UPDATE,
        SUBNET_DELETE,
        force="release the subnet's addresses too (without it, a subnet with addresses stays)",
    ),
)

static_routes = _router("static-routes")
add_routes(
    static_routes,
    Kind(
        "/static-routes",
        "static route",
        ROUTE_CREATE,
        ROUTE_GET,
        ROUTE_LIST,
        ROUTE_UPDATE,
        ROUTE_DELETE,
    ),
)

ipranges = _router("ipranges")
add_routes(
    ipranges,
    Kind("/ipranges", "IP range", RANGE_CREATE, RANGE_GET, RANGE_LIST, RANGE_UPDATE, RANGE_DELETE),
)


# -- the VLANs of one fabric --------------------------------------------------------------

FabricPath = Annotated[ObjectId, Path(description="the fabric's id")]
IN_FABRIC = Where("query", fabric_id="path.fabric_id")


class FabricVlanCreate(VlanCreate):
    """A new VLAN in the fabric of the path."""

    fabric_id: ObjectId | None = Field(  # type: ignore[assignment]
        None, description="may be left out; when given, it must be the fabric of the path"
    )


@vlans.get(
    "/fabrics/{fabric_id}/vlans",
    response_model=Page[Vlan],
    summary="VLANs of one fabric, by id (paged: `after` the last id, `limit`)",
)
async def list_fabric_vlans(
    fabric_id: FabricPath, page: Annotated[PageRequest, Query()], _: Reader, bus: BusDep
) -> Page[Vlan]:
    query = VlanQuery(fabric_id=fabric_id, after=page.after, limit=page.limit)
    found = await forward(bus, VLAN_LIST, query, IN_FABRIC)
    if not found.items:
        # Every fabric has its VLAN 0, so an empty page may mean no such fabric: a
        # 404 says so where an empty list would not. (Only then: one round trip otherwise.)
        await forward(bus, FABRIC_GET, ById(id=fabric_id), Where("path", id="path.fabric_id"))
    return found


@vlans.post(
    "/fabrics/{fabric_id}/vlans",
    status_code=status.HTTP_201_CREATED,
    response_model=Vlan,
    summary="Create a VLAN in one fabric: 201 with the new VLAN",
)
async def create_fabric_vlan(
    fabric_id: FabricPath, body: FabricVlanCreate, _: Operator, bus: BusDep
) -> Vlan:
    if body.fabric_id is not None and body.fabric_id != fabric_id:
        raise ValidationFailed(
            f"fabric_id {body.fabric_id} is not the fabric of the path ({fabric_id})",
            field="body.fabric_id",
        )
    request = VlanCreate.model_validate({**body.model_dump(), "fabric_id": fabric_id})
    # A fault with the fabric is named where the client gave it: the body, else the path.
    where = BODY if body.fabric_id is not None else Where("body", fabric_id="path.fabric_id")
    return await forward(bus, VLAN_CREATE, request, where)


# -- subnet statistics --------------------------------------------------------------------


@subnets.get(
    "/subnets/{id}/statistics",
    response_model=SubnetStatistics,
    summary=SUBNET_STATISTICS.description,
)
async def subnet_statistics(
    id: IdPath,
    _: Reader,
    bus: BusDep,
    free_block_limit: Annotated[
        int, Query(ge=0, le=10000, description="list at most this many free blocks")
    ] = 100,
) -> SubnetStatistics:
    request = StatisticsRequest(id=id, free_block_limit=free_block_limit)
    return await forward(bus, SUBNET_STATISTICS, request, Where("query", id="path.id"))


routers = (fabrics, vlans, spaces, subnets, static_routes, ipranges)
