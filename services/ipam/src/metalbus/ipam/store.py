"""What every ipam handler shares: look-ups, locks, paging, events, row -> public model."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from functools import wraps
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract.ipam import (
    Fabric,
    IpAddress,
    IpRange,
    Page,
    PageRequest,
    Space,
    StaticRoute,
    Subnet,
    Vlan,
)
from metalbus.shared.errors import Conflict, NotFound, ValidationFailed
from metalbus.shared.events import EventPayload, new_event
from metalbus.shared.outbox import stage

from .models import (
    FabricRow,
    IpAddressRow,
    IpRangeRow,
    SpaceRow,
    StaticRouteRow,
    SubnetRow,
    VlanRow,
)
from .spans import from_key

RowT = TypeVar("RowT", bound=SQLModel)
ItemT = TypeVar("ItemT", bound=BaseModel)
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


async def get_row(
    session: AsyncSession, model: type[RowT], object_id: int, *, field: str = "id"
) -> RowT:
    """The row with this id, or NotFound naming ``field``."""
    row = await session.get(model, object_id)
    if row is None:
        noun = str(model.__tablename__).removeprefix("ipam_").replace("_", " ")
        raise NotFound(f"no {noun} with id {object_id}", field=field)
    return row


async def lock_subnet(session: AsyncSession, subnet_id: int, *, field: str = "id") -> SubnetRow:
    """The subnet row, locked until the transaction ends.

    PostgreSQL: ``SELECT ... FOR UPDATE``, so replicas change one subnet's addresses one
    at a time. SQLite: every write transaction already holds the database's write lock.
    """
    row = (
        await session.exec(
            select(SubnetRow)
            .where(SubnetRow.id == subnet_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    if row is None:
        raise NotFound(f"no subnet with id {subnet_id}", field=field)
    return row


async def page_of(
    session: AsyncSession,
    model: type[RowT],
    request: PageRequest,
    to_public: Callable[[RowT], ItemT],
    *conditions: Any,
) -> Page[ItemT]:
    """One page of rows in id order after ``request.after``."""
    id_column = col(model.id)  # type: ignore[attr-defined]
    query = select(model).where(id_column > request.after, *conditions).order_by(id_column)
    rows = list((await session.exec(query.limit(request.limit + 1))).all())
    more = len(rows) > request.limit
    items = [to_public(r) for r in rows[: request.limit]]
    return Page[ItemT](items=items, next=rows[request.limit - 1].id if more else None)  # type: ignore[attr-defined]


def refuse_nulls(changes: dict[str, Any], *fields: str) -> None:
    """An update may not set these fields to null (they always have a value)."""
    for name in fields:
        if name in changes and changes[name] is None:
            raise ValidationFailed(f"{name} cannot be null", field=f"changes.{name}")


def emit(session: AsyncSession, payload: EventPayload, subject: str) -> None:
    """Stage an event in the transaction that made the change."""
    stage(session, new_event(payload, subject=subject))


def conflicts_as_errors(message: str, field: str | None = None) -> Callable[[Handler], Handler]:
    """Turn a unique-constraint violation (two writers racing past the checks) into Conflict."""

    def wrap(handler: Handler) -> Handler:
        @wraps(handler)
        async def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return await handler(*args, **kwargs)
            except IntegrityError as exc:
                raise Conflict(message, field=field) from exc

        return run  # type: ignore[return-value]

    return wrap


# -- rows as the contract shows them -----------------------------------------------------


def public(model: type[ItemT], row: SQLModel, **differences: Any) -> ItemT:
    """The contract's view of a row: its same-named columns, plus what is stored otherwise."""
    return model.model_validate({**row.model_dump(), **differences})


def fabric_public(row: FabricRow) -> Fabric:
    return public(Fabric, row, default_vlan_id=row.default_vlan_id or 0)


def space_public(row: SpaceRow) -> Space:
    return public(Space, row)


def vlan_public(row: VlanRow) -> Vlan:
    return public(Vlan, row)


def subnet_public(row: SubnetRow, vlan: VlanRow) -> Subnet:
    return public(
        Subnet,
        row,
        fabric_id=vlan.fabric_id,
        space_id=vlan.space_id,
        dns_servers=json.loads(row.dns_servers),
        ntp_servers=json.loads(row.ntp_servers),
        disabled_boot_architectures=json.loads(row.disabled_boot_architectures),
    )


def route_public(row: StaticRouteRow, destination_cidr: str) -> StaticRoute:
    return public(StaticRoute, row, destination_cidr=destination_cidr)


def range_public(row: IpRangeRow) -> IpRange:
    return public(IpRange, row, size=from_key(row.end_key) - from_key(row.start_key) + 1)


def address_public(row: IpAddressRow) -> IpAddress:
    return public(IpAddress, row)


async def subnet_with_vlan(session: AsyncSession, subnet: SubnetRow) -> Subnet:
    """The public subnet (it shows its VLAN's fabric and space)."""
    vlan = await get_row(session, VlanRow, subnet.vlan_id, field="vlan_id")
    return subnet_public(subnet, vlan)


async def subnets_public(session: AsyncSession, rows: Sequence[SubnetRow]) -> list[Subnet]:
    """Many public subnets with one VLAN look-up."""
    vlan_ids = {r.vlan_id for r in rows}
    vlans = {
        v.id: v
        for v in (await session.exec(select(VlanRow).where(col(VlanRow.id).in_(vlan_ids)))).all()
    }
    return [subnet_public(r, vlans[r.vlan_id]) for r in rows]
