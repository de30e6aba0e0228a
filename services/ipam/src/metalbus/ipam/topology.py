"""Fabrics, spaces and VLANs: where subnets live.

Rules (MAAS's): a fabric is created with its default untagged VLAN (vid 0), which is
deleted only with the fabric; a vid is unique in its fabric; a VLAN relays DHCP to another
VLAN (never itself) and then serves none itself; DHCP turns on only on a VLAN with a dynamic
range on a managed subnet. A fabric or VLAN that holds subnets is deleted only with
``force``, which deletes the subnets too.
"""

from __future__ import annotations

import uuid

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract.ipam import (
    DeleteRequest,
    Fabric,
    FabricCreate,
    FabricCreated,
    FabricDeleted,
    FabricUpdate,
    FabricUpdated,
    Space,
    SpaceCreate,
    SpaceCreated,
    SpaceDeleted,
    SpaceUpdate,
    SpaceUpdated,
    UpdateRequest,
    Vlan,
    VlanCreate,
    VlanCreated,
    VlanDeleted,
    VlanUpdate,
    VlanUpdated,
)
from metalbus.shared.db import Database
from metalbus.shared.errors import Conflict, ValidationFailed
from metalbus.shared.events import utcnow

from .models import FabricRow, SpaceRow, SubnetRow, VlanRow
from .store import (
    conflicts_as_errors,
    emit,
    fabric_public,
    get_row,
    refuse_nulls,
    space_public,
    vlan_public,
)
from .subnets import delete_subnet, vlan_has_dynamic_range


async def _unique_name(
    session: AsyncSession, model: type[FabricRow] | type[SpaceRow], name: str, field: str
) -> None:
    taken = (await session.exec(select(model.id).where(model.name == name))).first()
    if taken is not None:
        raise Conflict(f"the name {name!r} is taken", field=field)


async def _default_name(
    session: AsyncSession, model: type[FabricRow] | type[SpaceRow], prefix: str, row_id: int
) -> str:
    name, n = f"{prefix}-{row_id}", 0
    while (await session.exec(select(model.id).where(model.name == name))).first() is not None:
        n += 1
        name = f"{prefix}-{row_id}-{n}"
    return name


# -- fabrics ------------------------------------------------------------------------------


async def create_default_fabric(session: AsyncSession, name: str | None = None) -> FabricRow:
    """A fabric with its untagged VLAN, events staged."""
    now = utcnow()
    fabric = FabricRow(
        name=name or f"fabric-new-{uuid.uuid4().hex}",
        description="",
        created_at=now,
        updated_at=now,
    )
    session.add(fabric)
    await session.flush()
    assert fabric.id is not None
    if name is None:
        fabric.name = await _default_name(session, FabricRow, "fabric", fabric.id)
    vlan = VlanRow(
        fabric_id=fabric.id,
        vid=0,
        name="untagged",
        mtu=1500,
        dhcp_on=False,
        description="",
        created_at=now,
        updated_at=now,
    )
    session.add(vlan)
    await session.flush()
    fabric.default_vlan_id = vlan.id
    session.add(fabric)
    emit(session, FabricCreated(fabric=fabric_public(fabric)), f"fabric/{fabric.id}")
    emit(session, VlanCreated(vlan=vlan_public(vlan)), f"vlan/{vlan.id}")
    return fabric


@conflicts_as_errors("a fabric with that name exists", "name")
async def create_fabric(db: Database, request: FabricCreate) -> Fabric:
    async with db.transaction() as session:
        if request.name is not None:
            await _unique_name(session, FabricRow, request.name, "name")
        fabric = await create_default_fabric(session, request.name)
        fabric.description = request.description
        fabric.class_type = request.class_type
        return fabric_public(fabric)


@conflicts_as_errors("a fabric with that name exists", "changes.name")
async def update_fabric(db: Database, request: UpdateRequest[FabricUpdate]) -> Fabric:
    changes = request.changes.model_dump(exclude_unset=True)
    async with db.transaction() as session:
        fabric = await get_row(session, FabricRow, request.id)
        if changes.get("name") is not None and changes["name"] != fabric.name:
            await _unique_name(session, FabricRow, changes["name"], "changes.name")
        for key, value in changes.items():
            if key == "name" and value is None:
                raise ValidationFailed("a fabric needs a name", field="changes.name")
            setattr(fabric, key, "" if key == "description" and value is None else value)
        fabric.updated_at = utcnow()
        session.add(fabric)
        public = fabric_public(fabric)
        emit(session, FabricUpdated(fabric=public), f"fabric/{fabric.id}")
        return public


async def delete_fabric(db: Database, request: DeleteRequest) -> Fabric:
    async with db.transaction() as session:
        fabric = await get_row(session, FabricRow, request.id)
        public = fabric_public(fabric)
        vlans = (await session.exec(select(VlanRow).where(VlanRow.fabric_id == fabric.id))).all()
        for vlan in vlans:
            await _delete_vlan(session, vlan, force=request.force, with_fabric=True)
        await session.delete(fabric)
        emit(session, FabricDeleted(fabric=public), f"fabric/{public.id}")
        return public


# -- spaces -------------------------------------------------------------------------------


@conflicts_as_errors("a space with that name exists", "name")
async def create_space(db: Database, request: SpaceCreate) -> Space:
    async with db.transaction() as session:
        if request.name is not None:
            await _unique_name(session, SpaceRow, request.name, "name")
        now = utcnow()
        space = SpaceRow(
            name=request.name or f"space-new-{uuid.uuid4().hex}",
            description=request.description,
            created_at=now,
            updated_at=now,
        )
        session.add(space)
        await session.flush()
        assert space.id is not None
        if request.name is None:
            space.name = await _default_name(session, SpaceRow, "space", space.id)
            session.add(space)
        public = space_public(space)
        emit(session, SpaceCreated(space=public), f"space/{space.id}")
        return public


@conflicts_as_errors("a space with that name exists", "changes.name")
async def update_space(db: Database, request: UpdateRequest[SpaceUpdate]) -> Space:
    changes = request.changes.model_dump(exclude_unset=True)
    async with db.transaction() as session:
        space = await get_row(session, SpaceRow, request.id)
        if "name" in changes:
            if changes["name"] is None:
                raise ValidationFailed("a space needs a name", field="changes.name")
            if changes["name"] != space.name:
                await _unique_name(session, SpaceRow, changes["name"], "changes.name")
            space.name = changes["name"]
        if "description" in changes:
            space.description = changes["description"] or ""
        space.updated_at = utcnow()
        session.add(space)
        public = space_public(space)
        emit(session, SpaceUpdated(space=public), f"space/{space.id}")
        return public


async def delete_space(db: Database, request: DeleteRequest) -> Space:
    """Delete a space; its VLANs stay, in no space."""
    async with db.transaction() as session:
        space = await get_row(session, SpaceRow, request.id)
        vlans = (await session.exec(select(VlanRow).where(VlanRow.space_id == space.id))).all()
        for vlan in vlans:
            vlan.space_id = None
            vlan.updated_at = utcnow()
            session.add(vlan)
            emit(session, VlanUpdated(vlan=vlan_public(vlan)), f"vlan/{vlan.id}")
        await session.flush()
        public = space_public(space)
        await session.delete(space)
        emit(session, SpaceDeleted(space=public), f"space/{public.id}")
        return public


# -- VLANs --------------------------------------------------------------------------------


async def _check_relay(
    session: AsyncSession, vlan_id: int | None, relay_id: int, field: str
) -> None:
    if relay_id == vlan_id:
        raise ValidationFailed("a VLAN cannot relay DHCP to itself", field=field)
    target = await get_row(session, VlanRow, relay_id, field=field)
    if target.relay_vlan_id is not None:
        raise ValidationFailed(
            f"VLAN {relay_id} relays DHCP itself; relay to the VLAN that serves it", field=field
        )


async def _check_dhcp_possible(session: AsyncSession, vlan_id: int | None, field: str) -> None:
    if vlan_id is None or not await vlan_has_dynamic_range(session, vlan_id):
        raise ValidationFailed(
            "DHCP needs a dynamic range on a managed subnet of the VLAN; create one first",
            field=field,
        )


@conflicts_as_errors("that vid is taken in the fabric", "vid")
async def create_vlan(db: Database, request: VlanCreate) -> Vlan:
    async with db.transaction() as session:
        await get_row(session, FabricRow, request.fabric_id, field="fabric_id")
        taken = (
            await session.exec(
                select(VlanRow.id).where(
                    VlanRow.fabric_id == request.fabric_id, VlanRow.vid == request.vid
                )
            )
        ).first()
        if taken is not None:
            raise Conflict(
                f"fabric {request.fabric_id} already has a VLAN with vid {request.vid}",
                field="vid",
            )
        if request.space_id is not None:
            await get_row(session, SpaceRow, request.space_id, field="space_id")
        if request.relay_vlan_id is not None:
            await _check_relay(session, None, request.relay_vlan_id, "relay_vlan_id")
        if request.dhcp_on:
            await _check_dhcp_possible(session, None, "dhcp_on")
        now = utcnow()
        vlan = VlanRow(**request.model_dump(), created_at=now, updated_at=now)
        session.add(vlan)
        await session.flush()
        public = vlan_public(vlan)
        emit(session, VlanCreated(vlan=public), f"vlan/{vlan.id}")
        return public


@conflicts_as_errors("that vid is taken in the fabric", "changes.vid")
async def update_vlan(db: Database, request: UpdateRequest[VlanUpdate]) -> Vlan:
    changes = request.changes.model_dump(exclude_unset=True)
    async with db.transaction() as session:
        vlan = await get_row(session, VlanRow, request.id)
        refuse_nulls(changes, "vid", "mtu", "dhcp_on")
        if "vid" in changes and changes["vid"] != vlan.vid:
            taken = (
                await session.exec(
                    select(VlanRow.id).where(
                        VlanRow.fabric_id == vlan.fabric_id, VlanRow.vid == changes["vid"]
                    )
                )
            ).first()
            if taken is not None:
                raise Conflict(
                    f"fabric {vlan.fabric_id} already has a VLAN with vid {changes['vid']}",
                    field="changes.vid",
                )
        if changes.get("space_id") is not None:
            await get_row(session, SpaceRow, changes["space_id"], field="changes.space_id")
        if changes.get("relay_vlan_id") is not None:
            await _check_relay(session, vlan.id, changes["relay_vlan_id"], "changes.relay_vlan_id")
        relay = changes.get("relay_vlan_id", vlan.relay_vlan_id)
        if changes.get("dhcp_on") and not vlan.dhcp_on:
            await _check_dhcp_possible(session, vlan.id, "changes.dhcp_on")
        if relay is not None and changes.get("dhcp_on", vlan.dhcp_on):
            raise ValidationFailed(
                "a VLAN that relays DHCP to another does not serve DHCP itself",
                field="changes.dhcp_on" if "dhcp_on" in changes else "changes.relay_vlan_id",
            )
        if relay is not None and relay != vlan.relay_vlan_id:
            relayed_to_me = (
                await session.exec(select(VlanRow.id).where(VlanRow.relay_vlan_id == vlan.id))
            ).first()
            if relayed_to_me is not None:
                raise ValidationFailed(
                    f"VLAN {relayed_to_me} relays DHCP to this one; it cannot relay in turn",
                    field="changes.relay_vlan_id",
                )
        for key, value in changes.items():
            setattr(vlan, key, "" if key == "description" and value is None else value)
        vlan.updated_at = utcnow()
        session.add(vlan)
        public = vlan_public(vlan)
        emit(session, VlanUpdated(vlan=public), f"vlan/{vlan.id}")
        return public


async def _delete_vlan(
    session: AsyncSession, vlan: VlanRow, *, force: bool, with_fabric: bool = False
) -> Vlan:
    fabric = await get_row(session, FabricRow, vlan.fabric_id, field="fabric_id")
    if fabric.default_vlan_id == vlan.id and not with_fabric:
        raise Conflict(
            f"VLAN {vlan.id} is the default VLAN of fabric {fabric.name}; delete the fabric",
            field="id",
        )
    subnets = (await session.exec(select(SubnetRow).where(SubnetRow.vlan_id == vlan.id))).all()
    if subnets and not force:
        cidrs = ", ".join(s.cidr for s in subnets[:5])
        raise Conflict(
            f"VLAN {vlan.vid} of fabric {fabric.name} is in use by subnets {cidrs}; "
            "move or delete them, or delete with force",
            field="id",
            details={"subnets": [s.id for s in subnets]},
        )
    for subnet in subnets:
        await delete_subnet(session, subnet)
    relaying = (await session.exec(select(VlanRow).where(VlanRow.relay_vlan_id == vlan.id))).all()
    for other in relaying:
        other.relay_vlan_id = None
        other.updated_at = utcnow()
        session.add(other)
        emit(session, VlanUpdated(vlan=vlan_public(other)), f"vlan/{other.id}")
    if with_fabric:
        fabric.default_vlan_id = None
        session.add(fabric)
    await session.flush()
    public = vlan_public(vlan)
    await session.delete(vlan)
    await session.flush()
    emit(session, VlanDeleted(vlan=public), f"vlan/{public.id}")
    return public


async def delete_vlan(db: Database, request: DeleteRequest) -> Vlan:
    async with db.transaction() as session:
        vlan = await get_row(session, VlanRow, request.id)
        return await _delete_vlan(session, vlan, force=request.force)
