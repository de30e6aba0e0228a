"""``/api/v1/machines``: the inventory, its actions, and the boot environments' callbacks.

Reads need ``readonly``, changes and actions ``operator``. An action moves the machine's
status at once (an illegal move is a 409 naming the action and the status) and leaves the
work to the flow driver (:mod:`metalbus.api.machines.flows`), so it answers 202 with the
machine as it is now; watch ``GET /machines/{system_id}`` or the event stream.

The two callback routes are for the machine itself: its boot environment posts with the
token metalbus put in its kernel command line (``metalbus.token=...``), not an API token.
"""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.bus import Bus
from metalbus.shared.contract import compose as c
from metalbus.shared.contract import ipam as ip
from metalbus.shared.contract import power as p
from metalbus.shared.contract.ipam import ById, UpdateRequest
from metalbus.shared.contract.machines import MachineStatus as S
from metalbus.shared.errors import Conflict, NotFound, Unauthorized, ValidationFailed

from ..deps import BusDep, DatabaseDep, Operator, Reader, ReadSession
from ..machines import allocation, store
from ..machines.flows import FlowDriver, first_step
from ..machines.models import LinkMode, Machine, MachineInterface, MachineLink, ResourcePool, Zone
from ..machines.shapes import (
    AllocateRequest,
    CommissioningReport,
    DeployReport,
    DeployRequest,
    InterfaceCreate,
    LinkCreate,
    MachineCreate,
    MachinePublic,
    MachineUpdate,
    PowerSpec,
    StatusPublic,
)
from ..machines.states import Action
from . import API_PREFIX, problem_responses
from .forwarding import IdPath, Where, forward

router = APIRouter(
    prefix=API_PREFIX, tags=["machines"], responses=problem_responses(401, 403, 404, 409, 422)
)
_machine_token = HTTPBearer(auto_error=False, description="the machine's callback token")
POWER_FIELDS = Where("body.power", name="body.hostname")
"""Power's faults name its request's fields (``settings.password``): the client's ``body.power``."""


async def get_flows(request: Request) -> FlowDriver:
    return request.app.state.flows  # type: ignore[no-any-return]


FlowsDep = Annotated[FlowDriver, Depends(get_flows)]


async def _answer(db: DatabaseDep, system_id: str) -> MachinePublic:
    async with db.read() as session:
        return await store.public(session, await store.get_machine(session, system_id))


# -- power --------------------------------------------------------------------------------


async def _set_power(
    bus: Bus, system_id: str, hostname: str, bmc_id: int | None, spec: PowerSpec
) -> p.Bmc:
    """Give the power service the machine's power (it checks and keeps the settings)."""
    if bmc_id is not None:
        try:
            current = await bus.request(p.BMC_GET, ById(id=bmc_id))
        except NotFound:
            current = None
        if current is not None and current.driver == spec.driver:
            return await forward(
                bus,
                p.BMC_UPDATE,
                UpdateRequest[p.BmcUpdate](id=bmc_id, changes=p.BmcUpdate(settings=spec.settings)),
                Where("body.power", changes="body.power"),
            )
        if current is not None:
            await bus.request(p.BMC_DELETE, ById(id=bmc_id))
    return await forward(
        bus,
        p.BMC_CREATE,
        p.BmcCreate(
            name=store.bmc_name(hostname, system_id),
            driver=spec.driver,
            settings=spec.settings,
            machine_id=system_id,
        ),
        POWER_FIELDS,
    )


def _power_columns(machine: Machine, bmc: p.Bmc) -> None:
    machine.bmc_id = bmc.id
    machine.power_driver = bmc.driver.value
    machine.power_parameters = json.dumps(bmc.settings)  # the power service left out secrets
    machine.power_pending = False


# -- the inventory ------------------------------------------------------------------------


@router.get("/machines", response_model=list[MachinePublic], summary="Machines, by id")
async def list_machines(
    _: Reader,
    session: ReadSession,
    status_: Annotated[S | None, Query(alias="status")] = None,
    zone: str | None = None,
    pool: str | None = None,
    hostname: str | None = None,
) -> list[MachinePublic]:
    query = select(Machine).order_by(col(Machine.id))
    if status_ is not None:
        query = query.where(Machine.status == status_)
    if hostname is not None:
        query = query.where(Machine.hostname == hostname)
    if zone is not None:
        query = query.where(
            Machine.zone_id == (await store.named_by_name(session, Zone, zone, "query.zone")).id
        )
    if pool is not None:
        query = query.where(
            Machine.pool_id
            == (await store.named_by_name(session, ResourcePool, pool, "query.pool")).id
        )
    return [await store.public(session, m) for m in (await session.exec(query)).all()]


@router.post(
    "/machines",
    status_code=status.HTTP_201_CREATED,
    response_model=MachinePublic,
    summary="Add a machine by hand (it starts New)",
)
async def create_machine(
    body: MachineCreate, _: Operator, db: DatabaseDep, bus: BusDep
) -> MachinePublic:
    system_id = store.new_system_id()
    macs = [i.mac for i in body.interfaces]
    async with db.read() as session:
        zone = await store.named_by_name(session, Zone, body.zone, "body.zone")
        pool = await store.named_by_name(session, ResourcePool, body.pool, "body.pool")
        if body.hostname:
            await store.check_hostname_free(session, body.hostname)
        await store.check_macs_free(session, macs, "body.interfaces")
    hostname = body.hostname or f"machine-{system_id}"
    bmc = await _set_power(bus, system_id, hostname, None, body.power) if body.power else None
    try:
        async with db.transaction() as session:
            machine = await store.create_machine(
                session,
                cause="added",
                system_id=system_id,
                interfaces=[(i.name, i.mac, i.vlan_id) for i in body.interfaces],
                hostname=hostname,
                domain=body.domain,
                architecture=body.architecture,
                zone_id=zone.id,
                pool_id=pool.id,
                tags=json.dumps(sorted(set(body.tags))),
            )
            if bmc is not None:
                _power_columns(machine, bmc)
    except Exception:
        if bmc is not None:  # nothing half-written: the BMC goes with the failed machine
            await bus.request(p.BMC_DELETE, ById(id=bmc.id))
        raise
    return await _answer(db, system_id)


@router.get("/machines/{system_id}", response_model=MachinePublic, summary="One machine")
async def get_machine(system_id: str, _: Reader, session: ReadSession) -> MachinePublic:
    return await store.public(session, await store.get_machine(session, system_id))


@router.get(
    "/machines/{system_id}/history",
    response_model=list[StatusPublic],
    summary="A machine's status changes, oldest first",
)
async def machine_history(system_id: str, _: Reader, session: ReadSession) -> list[StatusPublic]:
    return await store.history(session, await store.get_machine(session, system_id))


@router.patch("/machines/{system_id}", response_model=MachinePublic, summary="Change a machine")
async def update_machine(
    system_id: str, body: MachineUpdate, _: Operator, db: DatabaseDep, bus: BusDep
) -> MachinePublic:
    async with db.read() as session:
        machine = await store.get_machine(session, system_id)
        zone = (
            await store.named_by_name(session, Zone, body.zone, "body.zone") if body.zone else None
        )
        pool = (
            await store.named_by_name(session, ResourcePool, body.pool, "body.pool")
            if body.pool
            else None
        )
        if body.hostname and body.hostname != machine.hostname:
            await store.check_hostname_free(session, body.hostname)
    bmc = (
        await _set_power(bus, system_id, machine.hostname, machine.bmc_id, body.power)
        if body.power
        else None
    )
    async with db.transaction() as session:
        machine = await store.get_machine(session, system_id, lock=True)
        for name in ("hostname", "domain", "architecture"):
            if getattr(body, name) is not None:
                setattr(machine, name, getattr(body, name))
        if body.tags is not None:
            machine.tags = json.dumps(sorted(set(body.tags)))
        if zone is not None:
            machine.zone_id = zone.id
        if pool is not None:
            machine.pool_id = pool.id
        if bmc is not None:
            _power_columns(machine, bmc)
        await store.changed(session, machine)
    return await _answer(db, system_id)


@router.delete(
    "/machines/{system_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a machine that is not in use (its BMC, static addresses and VM go too)",
)
async def delete_machine(system_id: str, _: Operator, db: DatabaseDep, bus: BusDep) -> Response:
    async with db.read() as session:
        machine = await store.get_machine(session, system_id)
        links = await store.links_of(session, await store.interfaces_of(session, machine))
    busy = (
        S.ALLOCATED,
        S.DEPLOYING,
        S.DEPLOYED,
        S.RELEASING,
        S.COMMISSIONING,
        S.TESTING,
        S.RESCUE_MODE,
    )
    if machine.status in busy:
        raise Conflict(
            f"cannot delete a machine that is {machine.status}: release or abort it first",
            details={"action": "delete", "status": machine.status},
        )
    for link in links:
        if link.ip_id is not None:
            try:
                await bus.request(ip.ADDRESS_RELEASE, ip.ReleaseAddress(id=link.ip_id))
            except NotFound:
                pass
    if machine.vm_id is not None:
        try:
            await bus.request(c.VM_DECOMPOSE, c.DecomposeRequest(id=machine.vm_id))
        except NotFound:
            pass
    if machine.bmc_id is not None:
        try:
            await bus.request(p.BMC_DELETE, ById(id=machine.bmc_id))
        except NotFound:
            pass
    async with db.transaction() as session:
        try:
            await store.delete_machine(session, await store.get_machine(session, system_id))
        except NotFound:
            pass  # the decompose's event removed it already
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- interfaces and links -----------------------------------------------------------------


@router.post(
    "/machines/{system_id}/interfaces",
    status_code=status.HTTP_201_CREATED,
    response_model=MachinePublic,
    summary="Add a network interface",
)
async def add_interface(
    system_id: str, body: InterfaceCreate, _: Operator, db: DatabaseDep
) -> MachinePublic:
    async with db.transaction() as session:
        machine = await store.get_machine(session, system_id, lock=True)
        await store.check_macs_free(session, [body.mac], "body.mac")
        session.add(
            MachineInterface(
                machine_id=machine.id, name=body.name, mac=body.mac, vlan_id=body.vlan_id
            )
        )
        await store.changed(session, machine)
    return await _answer(db, system_id)


async def _interface(
    session: AsyncSession, machine: Machine, interface_id: int
) -> MachineInterface:
    interface = await session.get(MachineInterface, interface_id)
    if interface is None or interface.machine_id != machine.id:
        raise NotFound(
            f"machine {machine.system_id} has no interface {interface_id}",
            field="path.interface_id",
        )
    return interface


_LINKS_FIXED = (S.DEPLOYING, S.DEPLOYED, S.RELEASING)


@router.post(
    "/machines/{system_id}/interfaces/{interface_id}/links",
    status_code=status.HTTP_201_CREATED,
    response_model=MachinePublic,
    summary="Link an interface to a subnet (auto, static, dhcp or link_up)",
)
async def link_subnet(
    system_id: str,
    interface_id: IdPath,
    body: LinkCreate,
    _: Operator,
    db: DatabaseDep,
    bus: BusDep,
) -> MachinePublic:
    if body.mode == LinkMode.STATIC and body.ip is None:
        raise ValidationFailed("a static link needs an ip", field="body.ip")
    if body.mode != LinkMode.STATIC and body.ip is not None:
        raise ValidationFailed(f"a {body.mode.value} link takes no ip", field="body.ip")
    if body.mode != LinkMode.LINK_UP and body.subnet_id is None:
        raise ValidationFailed(
            f"a {body.mode.value} link needs a subnet_id", field="body.subnet_id"
        )
    vlan_id = None
    if body.subnet_id is not None:
        subnet = await forward(
            bus, ip.SUBNET_GET, ById(id=body.subnet_id), Where("body", id="body.subnet_id")
        )
        vlan_id = subnet.vlan_id
    async with db.transaction() as session:
        machine = await store.get_machine(session, system_id, lock=True)
        if machine.status in _LINKS_FIXED:
            raise Conflict(f"cannot change the links of a machine that is {machine.status}")
        interface = await _interface(session, machine, interface_id)
        session.add(
            MachineLink(
                interface_id=interface.id,
                mode=body.mode,
                subnet_id=body.subnet_id,
                vlan_id=vlan_id,
                requested_ip=body.ip,
            )
        )
        if vlan_id is not None:
            interface.vlan_id = vlan_id
            session.add(interface)
        await store.changed(session, machine)
    return await _answer(db, system_id)


@router.delete(
    "/machines/{system_id}/interfaces/{interface_id}/links/{link_id}",
    response_model=MachinePublic,
    summary="Remove a link (a static address it holds is released)",
)
async def unlink_subnet(
    system_id: str, interface_id: IdPath, link_id: IdPath, _: Operator, db: DatabaseDep, bus: BusDep
) -> MachinePublic:
    async with db.read() as session:
        machine = await store.get_machine(session, system_id)
        await _interface(session, machine, interface_id)
        link = await session.get(MachineLink, link_id)
    if link is None or link.interface_id != interface_id:
        raise NotFound(f"interface {interface_id} has no link {link_id}", field="path.link_id")
    if machine.status in _LINKS_FIXED:
        raise Conflict(f"cannot change the links of a machine that is {machine.status}")
    if link.ip_id is not None:
        try:
            await bus.request(ip.ADDRESS_RELEASE, ip.ReleaseAddress(id=link.ip_id))
        except NotFound:
            pass
    async with db.transaction() as session:
        row = await session.get(MachineLink, link_id)
        if row is not None:
            await session.delete(row)
        await store.changed(session, await store.get_machine(session, system_id))
    return await _answer(db, system_id)


# -- actions ------------------------------------------------------------------------------


async def _act(
    db: DatabaseDep,
    flows: FlowDriver,
    system_id: str,
    action: Action,
    flow: str | None,
    message: str,
    **columns: object,
) -> MachinePublic:
    async with db.transaction() as session:
        machine = await store.get_machine(session, system_id, lock=True)
        await store.move(
            session, machine, action, message, flow=flow, step=first_step(flow) if flow else None
        )
        for name, value in columns.items():
            setattr(machine, name, value)
        if action in (Action.ABORT, Action.MARK_BROKEN, Action.MARK_FIXED):
            machine.token_hash = None
    flows.wake()
    return await _answer(db, system_id)


ACCEPTED: dict[str, Any] = {
    "status_code": status.HTTP_202_ACCEPTED,
    "response_model": MachinePublic,
}
SIMPLE_ACTIONS = [
    # (path, action, flow it starts, summary)
    ("commission", Action.COMMISSION, "commission", "Commission: boot, report hardware, Ready"),
    ("release", Action.RELEASE, "release", "Release: power off, free addresses, decompose"),
    ("abort", Action.ABORT, "settle", "Abort commissioning, deployment or testing"),
    ("mark-broken", Action.MARK_BROKEN, None, "Mark a machine broken"),
    ("mark-fixed", Action.MARK_FIXED, None, "Mark a broken machine fixed (Ready)"),
    ("rescue-mode", Action.RESCUE_MODE, "rescue", "Boot the ephemeral environment (rescue)"),
    ("exit-rescue-mode", Action.EXIT_RESCUE_MODE, "exit_rescue", "Leave rescue mode"),
    ("test", Action.TEST, "test", "Test: boot the ephemeral environment, which reports"),
]


def _add_action(path: str, action: Action, flow: str | None, summary: str) -> None:
    async def act(
        system_id: str, principal: Operator, db: DatabaseDep, flows: FlowsDep
    ) -> MachinePublic:
        return await _act(db, flows, system_id, action, flow, f"by {principal.name}")

    router.add_api_route(
        f"/machines/{{system_id}}/{path}",
        act,
        methods=["POST"],
        summary=summary,
        name=path.replace("-", "_"),
        **ACCEPTED,
    )


for _action in SIMPLE_ACTIONS:
    _add_action(*_action)


@router.post(
    "/machines/allocate",
    response_model=MachinePublic,
    summary="Allocate a machine by constraints (composing one if needed)",
    # composing asks the compose service over the bus, which may be down or slow
    responses=problem_responses(503, 504),
)
async def allocate(
    body: AllocateRequest, principal: Operator, db: DatabaseDep, bus: BusDep
) -> MachinePublic:
    system_id = await allocation.allocate(db, bus, body, principal.name)
    return await _answer(db, system_id)


@router.post("/machines/{system_id}/deploy", summary="Deploy an allocated machine", **ACCEPTED)
async def deploy(
    system_id: str,
    principal: Operator,
    db: DatabaseDep,
    flows: FlowsDep,
    body: DeployRequest | None = None,
) -> MachinePublic:
    install_kvm = body.install_kvm if body else False
    return await _act(
        db,
        flows,
        system_id,
        Action.DEPLOY,
        "deploy",
        f"by {principal.name}",
        install_kvm=install_kvm,
    )


# -- callbacks from the machine's boot environment -----------------------------------------


async def machine_bearer(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_machine_token)],
) -> str:
    """The bearer a boot environment sends (checked before the body, like API tokens)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("the machine's callback token is required (Authorization: Bearer)")
    return credentials.credentials


async def _by_token(session: AsyncSession, system_id: str, bearer: str) -> Machine:
    """The machine, if ``bearer`` is its current callback token. Raises Unauthorized."""
    query = select(Machine).where(Machine.system_id == system_id).with_for_update()
    machine = (await session.exec(query)).first()
    if (
        machine is None
        or machine.token_hash is None
        or not hmac.compare_digest(machine.token_hash, store.hash_token(bearer))
    ):
        raise Unauthorized("the token is not this machine's current callback token")
    return machine


MachineToken = Annotated[str, Depends(machine_bearer)]


@router.post(
    "/machines/{system_id}/callback/commissioning",
    response_model=MachinePublic,
    summary="The commissioning environment reports the hardware (machine token)",
)
async def commissioning_report(
    system_id: str, body: CommissioningReport, token: MachineToken, db: DatabaseDep, flows: FlowsDep
) -> MachinePublic:
    async with db.transaction() as session:
        machine = await _by_token(session, system_id, token)
        if machine.status != S.COMMISSIONING:
            raise Conflict(f"the machine is {machine.status}, not commissioning")
        machine.cores = body.cores
        machine.memory = body.memory
        machine.architecture = body.architecture or machine.architecture
        machine.disks = json.dumps([d.model_dump() for d in body.disks])
        machine.storage = sum(d.size for d in body.disks)
        known = {i.mac: i for i in await store.interfaces_of(session, machine)}
        new = [n.mac for n in body.interfaces if n.mac not in known]
        if new:
            await store.check_macs_free(session, new, "body.interfaces")
        for nic in body.interfaces:
            if nic.mac in known:
                known[nic.mac].name = nic.name
                session.add(known[nic.mac])
            else:
                session.add(MachineInterface(machine_id=machine.id, name=nic.name, mac=nic.mac))
        machine.token_hash = None
        await store.move(
            session,
            machine,
            Action.COMMISSIONED,
            "hardware reported",
            flow="settle",
            step=first_step("settle"),
        )
        await store.changed(session, machine)
    flows.wake()
    return await _answer(db, system_id)


_RESULTS = {S.DEPLOYING: (Action.DEPLOYED, "deployed"), S.TESTING: (Action.TESTED, "settle")}
"""Statuses that wait for a result: the move on success and the flow that tidies up."""


@router.post(
    "/machines/{system_id}/callback/result",
    response_model=MachinePublic,
    summary="The deploy or testing environment reports success or failure (machine token)",
)
async def result_report(
    system_id: str, body: DeployReport, token: MachineToken, db: DatabaseDep, flows: FlowsDep
) -> MachinePublic:
    async with db.transaction() as session:
        machine = await _by_token(session, system_id, token)
        awaited = _RESULTS.get(S(machine.status))
        if awaited is None:
            raise Conflict(f"the machine is {machine.status}: no result is awaited")
        message = body.message or body.result
        if body.result == "success":
            done, flow = awaited
            await store.move(session, machine, done, message, flow=flow, step=first_step(flow))
        else:
            await store.move(session, machine, Action.FAIL, message)
        machine.token_hash = None
    flows.wake()
    return await _answer(db, system_id)
