"""``/api/v1/pods`` and ``/api/v1/vms``: KVM hosts and their VMs, forwarded to compose.

Reads need ``readonly``; adding, changing, refreshing and deleting hosts, composing and
decomposing VMs need ``operator``. The api keeps nothing: compose discovers hosts through
libvirt, seals their credentials and never sends them back. A fault's ``field`` is named
where the client put it (``body.storage``, ``path.id``, ``query.decompose``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from metalbus.shared.contract import compose as cp
from metalbus.shared.contract.ipam import ById, Page, UpdateRequest

from ..deps import BusDep, Operator, Reader
from . import API_PREFIX, problem_responses
from .forwarding import BODY, CHANGES, PATH, QUERY, IdPath, Where, forward

ERRORS = problem_responses(401, 403, 404, 409, 422, 503, 504)
router = APIRouter(prefix=API_PREFIX, tags=["pods"], responses=ERRORS)
COMPOSE_BODY = Where("body", host_id="path.id")


@router.get("/pods", response_model=Page[cp.KvmHost], summary="KVM hosts, by id (paged)")
async def list_pods(
    _: Reader, bus: BusDep, query: Annotated[cp.KvmHostQuery, Query()]
) -> Page[cp.KvmHost]:
    return await forward(bus, cp.HOST_LIST, query, QUERY)


@router.post(
    "/pods",
    status_code=status.HTTP_201_CREATED,
    response_model=cp.KvmHost,
    summary="Add a KVM host and discover it (its credentials are never shown again)",
)
async def create_pod(body: cp.KvmHostCreate, _: Operator, bus: BusDep) -> cp.KvmHost:
    return await forward(bus, cp.HOST_CREATE, body, BODY)


@router.get("/pods/{id}", response_model=cp.KvmHost, summary="One KVM host")
async def get_pod(id: IdPath, _: Reader, bus: BusDep) -> cp.KvmHost:
    return await forward(bus, cp.HOST_GET, ById(id=id), PATH)


@router.patch(
    "/pods/{id}",
    response_model=cp.KvmHost,
    summary="Change a KVM host (only the fields sent change; a new uri is rediscovered)",
)
async def update_pod(id: IdPath, body: cp.KvmHostUpdate, _: Operator, bus: BusDep) -> cp.KvmHost:
    request = UpdateRequest[cp.KvmHostUpdate](id=id, changes=body)
    return await forward(bus, cp.HOST_UPDATE, request, CHANGES)


@router.post("/pods/{id}/refresh", response_model=cp.KvmHost, summary="Discover a KVM host again")
async def refresh_pod(id: IdPath, _: Operator, bus: BusDep) -> cp.KvmHost:
    return await forward(bus, cp.HOST_REFRESH, ById(id=id), PATH)


@router.delete(
    "/pods/{id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Forget a KVM host: 204 (with decompose=true its composed VMs go first)",
)
async def delete_pod(
    id: IdPath,
    _: Operator,
    bus: BusDep,
    decompose: Annotated[bool, Query(description="decompose the VMs metalbus composed")] = False,
) -> Response:
    request = cp.KvmHostDelete(id=id, decompose=decompose)
    await forward(bus, cp.HOST_DELETE, request, Where("path", decompose="query.decompose"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/pods/{id}/compose",
    status_code=status.HTTP_201_CREATED,
    response_model=cp.ComposeResult,
    summary="Compose VMs on a KVM host: 201 with the VMs and any warnings",
)
async def compose_vms(
    id: IdPath, body: cp.ComposeSpec, _: Operator, bus: BusDep
) -> cp.ComposeResult:
    request = cp.ComposeRequest(host_id=id, **body.model_dump(exclude_unset=True))
    return await forward(bus, cp.VM_COMPOSE, request, COMPOSE_BODY)


@router.get("/vms", response_model=Page[cp.Vm], summary="VMs, by id (paged; host_id filters)")
async def list_vms(_: Reader, bus: BusDep, query: Annotated[cp.VmQuery, Query()]) -> Page[cp.Vm]:
    return await forward(bus, cp.VM_LIST, query, QUERY)


@router.get("/vms/{id}", response_model=cp.Vm, summary="One VM")
async def get_vm(id: IdPath, _: Reader, bus: BusDep) -> cp.Vm:
    return await forward(bus, cp.VM_GET, ById(id=id), PATH)


@router.get("/vms/{id}/xml", response_model=cp.VmXml, summary="A VM's domain XML, from libvirt")
async def get_vm_xml(id: IdPath, _: Reader, bus: BusDep) -> cp.VmXml:
    return await forward(bus, cp.VM_XML, ById(id=id), PATH)


@router.delete(
    "/vms/{id}",
    response_model=cp.Vm,
    summary="Decompose a VM: destroy, undefine with its storage, release its addresses",
)
async def decompose_vm(id: IdPath, _: Operator, bus: BusDep) -> cp.Vm:
    return await forward(bus, cp.VM_DECOMPOSE, cp.DecomposeRequest(id=id), PATH)
