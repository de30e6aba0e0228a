"""``/api/v1/discovery``: what the discovery service saw, and active scans (forwarded).

Reads need ``readonly``; clearing or making discoveries known, scans and DHCP probes need
``operator``. The api keeps nothing of discoveries: the discovery service joins its
neighbours with ipam and answers. Making one known is the api's own (it creates a device
or an interface, :mod:`metalbus.api.devices.known`). A fault's ``field`` is renamed after
where the client put it (``cidr`` becomes ``body.cidr``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from metalbus.shared.contract import discovery as d
from metalbus.shared.contract.devices import MadeKnown, MakeKnownRequest
from metalbus.shared.contract.ipam import Page

from ..deps import BusDep, DatabaseDep, Operator, Reader
from ..devices import known
from . import API_PREFIX, problem_responses
from .forwarding import BODY, PATH, QUERY, forward

router = APIRouter(
    prefix=f"{API_PREFIX}/discovery",
    tags=["discovery"],
    responses=problem_responses(401, 403, 404, 422, 503, 504),
)
ScanId = Annotated[int, Path(ge=1, description="the scan's id")]


@router.get(
    "/discoveries",
    response_model=Page[d.Discovery],
    summary="Neighbours seen on the wire, joined with ipam (filter by unknown, subnet, mac, ip)",
)
async def list_discoveries(
    _: Reader, bus: BusDep, query: Annotated[d.DiscoveryQuery, Query()]
) -> Page[d.Discovery]:
    return await forward(bus, d.DISCOVERY_LIST, query, QUERY)


@router.post(
    "/discoveries/clear",
    response_model=d.ClearResult,
    summary="Forget discoveries: by mac and/or ip, or every one with all=true",
)
async def clear_discoveries(body: d.ClearRequest, _: Operator, bus: BusDep) -> d.ClearResult:
    return await forward(bus, d.DISCOVERY_CLEAR, body, BODY)


@router.post(
    "/discoveries/make-known",
    response_model=MadeKnown,
    summary="Make a discovery a new device, or an interface of a machine or device",
)
async def make_known(
    body: MakeKnownRequest, _: Operator, db: DatabaseDep, bus: BusDep
) -> MadeKnown:
    return await known.make_known(db, bus, body)


@router.post(
    "/dhcp-probe",
    response_model=d.DhcpProbeResult,
    summary="Look for DHCP servers on an interface (external ones are reported and marked)",
)
async def dhcp_probe(
    _: Operator, bus: BusDep, body: d.DhcpProbe | None = None
) -> d.DhcpProbeResult:
    return await forward(bus, d.DHCP_PROBE, body or d.DhcpProbe(), BODY)


@router.post(
    "/scans",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=d.Scan,
    summary="Start a sweep of an IPv4 subnet: ARP if directly attached, else ping",
)
async def start_scan(body: d.ScanRequest, _: Operator, bus: BusDep) -> d.Scan:
    return await forward(bus, d.SCAN_START, body, BODY)


@router.get("/scans", response_model=Page[d.Scan], summary="Scans, by id")
async def list_scans(
    _: Reader, bus: BusDep, query: Annotated[d.ScanQuery, Query()]
) -> Page[d.Scan]:
    return await forward(bus, d.SCAN_LIST, query, QUERY)


@router.get("/scans/{scan_id}", response_model=d.Scan, summary="One scan, with its progress")
async def get_scan(scan_id: ScanId, _: Reader, bus: BusDep) -> d.Scan:
    return await forward(bus, d.SCAN_GET, d.ScanById(id=scan_id), PATH)
