"""IP addresses (allocate, release, look up) and the DHCP configuration of the ipam service.

Allocation and release take an ``Idempotency-Key`` header (the usual HTTP spelling) as well
as the body's ``idempotency_key``: a retry with the same key gets the answer the first
request got, so a client that lost a reply can simply send the request again.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Header, Query, status

from metalbus.shared.commands import Empty
from metalbus.shared.contract.ipam import (
    ADDRESS_ALLOCATE,
    ADDRESS_GET,
    ADDRESS_LIST,
    ADDRESS_RELEASE,
    DHCP_CONFIG,
    AllocateAddress,
    ById,
    DhcpConfig,
    IpAddress,
    IpAddressQuery,
    Page,
    ReleaseAddress,
)
from metalbus.shared.errors import ValidationFailed

from ...deps import BusDep, Operator, Reader
from .. import API_PREFIX
from ..forwarding import BODY, PATH, QUERY, IdPath, Where, forward
from .network import ERRORS

HEADER = "header.Idempotency-Key"
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        description="a retry with the same key gets the first answer (used when the body "
        "has no `idempotency_key`)",
    ),
]
Keyed = TypeVar("Keyed", AllocateAddress, ReleaseAddress)

addresses = APIRouter(prefix=API_PREFIX, tags=["ipaddresses"], responses=ERRORS)
dhcp = APIRouter(prefix=API_PREFIX, tags=["dhcp"], responses=ERRORS)


def with_key(body: Keyed, header: str | None) -> tuple[Keyed, Where]:
    """The body with the header's key when it has none, and where its fields came from."""
    if header is None or body.idempotency_key == header:
        return body, BODY
    if body.idempotency_key is not None:
        raise ValidationFailed(
            "the Idempotency-Key header and the body's idempotency_key differ", field=HEADER
        )
    return body.model_copy(update={"idempotency_key": header}), Where(
        "body", idempotency_key=HEADER
    )


@addresses.get(
    "/ipaddresses",
    response_model=Page[IpAddress],
    summary=f"{ADDRESS_LIST.description} (paged: `after` the last id, `limit`)",
)
async def list_addresses(
    query: Annotated[IpAddressQuery, Query()], _: Reader, bus: BusDep
) -> Page[IpAddress]:
    return await forward(bus, ADDRESS_LIST, query, QUERY)


@addresses.post(
    "/ipaddresses",
    status_code=status.HTTP_201_CREATED,
    response_model=IpAddress,
    summary="Assign a given or the next free address: 201 with the address (a retry: the same)",
)
async def allocate_address(
    body: AllocateAddress, _: Operator, bus: BusDep, idempotency_key: IdempotencyKey = None
) -> IpAddress:
    request, where = with_key(body, idempotency_key)
    return await forward(bus, ADDRESS_ALLOCATE, request, where)


@addresses.post(
    "/ipaddresses/release",
    response_model=IpAddress,
    summary="Release an address by `ip` (or `id`): 200 with the released address",
)
async def release_address(
    body: ReleaseAddress, _: Operator, bus: BusDep, idempotency_key: IdempotencyKey = None
) -> IpAddress:
    request, where = with_key(body, idempotency_key)
    return await forward(bus, ADDRESS_RELEASE, request, where)


@addresses.get("/ipaddresses/{id}", response_model=IpAddress, summary=ADDRESS_GET.description)
async def get_address(id: IdPath, _: Reader, bus: BusDep) -> IpAddress:
    return await forward(bus, ADDRESS_GET, ById(id=id), PATH)


@addresses.delete(
    "/ipaddresses/{id}",
    response_model=IpAddress,
    summary="Release an address: 200 with the released address",
)
async def delete_address(
    id: IdPath, _: Operator, bus: BusDep, idempotency_key: IdempotencyKey = None
) -> IpAddress:
    request = ReleaseAddress(id=id, idempotency_key=idempotency_key)
    return await forward(bus, ADDRESS_RELEASE, request, Where("path", idempotency_key=HEADER))


@dhcp.get("/dhcp-config", response_model=DhcpConfig, summary=DHCP_CONFIG.description)
async def dhcp_config(_: Reader, bus: BusDep) -> DhcpConfig:
    return await forward(bus, DHCP_CONFIG, Empty(), BODY)


routers = (addresses, dhcp)
