"""The five routes of zones and of resource pools: two kinds with the same shape.

Both are a name and a description; the ``default`` one is made by the migration and can
be neither renamed nor deleted; one that still holds machines cannot be deleted.
"""

# No ``from __future__ import annotations``: the endpoints are annotated with local models.

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Response, status
from sqlmodel import col, select

from metalbus.shared.contract import machines as m
from metalbus.shared.errors import Conflict, NotFound
from metalbus.shared.events import utcnow

from ..deps import DatabaseDep, Operator, Reader, ReadSession
from ..machines import store
from ..machines.models import Machine, ResourcePool, Zone
from ..machines.shapes import NamedCreate, NamedPublic, NamedUpdate
from . import API_PREFIX, problem_responses
from .forwarding import IdPath


@dataclass(frozen=True)
class NamedKind:
    """Zones or pools: their table, path, noun, the machine column and the events."""

    table: type[Zone] | type[ResourcePool]
    path: str
    noun: str
    column: str
    created: type[m.ZoneCreated] | type[m.PoolCreated]
    updated: type[m.ZoneUpdated] | type[m.PoolUpdated]
    deleted: type[m.ZoneDeleted] | type[m.PoolDeleted]

    def payload(self, event: Any, row: Zone | ResourcePool) -> Any:
        return event(**{"zone" if self.table is Zone else "pool": store.named_info(row)})


def named_router(kind: NamedKind) -> APIRouter:
    """A router with list, create, get, update and delete of ``kind``."""
    router = APIRouter(
        prefix=API_PREFIX,
        tags=[kind.path.strip("/")],
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    table = kind.table
    snake = kind.noun.replace(" ", "_")

    async def one(session: Any, object_id: int, *, lock: bool = False) -> Any:
        row = await session.get(table, object_id, with_for_update=lock)
        if row is None:
            raise NotFound(f"no {kind.noun} {object_id}", field="path.id")
        return row

    async def name_free(session: Any, name: str) -> None:
        if (await session.exec(select(table).where(table.name == name))).first() is not None:
            raise Conflict(f"a {kind.noun} is already called {name}", field="body.name")

    @router.get(
        kind.path,
        response_model=list[NamedPublic],
        summary=f"Every {kind.noun}",
        operation_id=f"list_{snake}s",
    )
    async def listing(_: Reader, session: ReadSession) -> list[NamedPublic]:
        rows = (await session.exec(select(table).order_by(col(table.id)))).all()
        return [store.named_public(r) for r in rows]

    @router.post(
        kind.path,
        status_code=status.HTTP_201_CREATED,
        response_model=NamedPublic,
        summary=f"Create a {kind.noun}",
        operation_id=f"create_{snake}",
    )
    async def create(body: NamedCreate, _: Operator, db: DatabaseDep) -> NamedPublic:
        async with db.transaction() as session:
            await name_free(session, body.name)
            now = utcnow()
            row = table(
                name=body.name, description=body.description, created_at=now, updated_at=now
            )
            session.add(row)
            await session.flush()
            store.stage(session, kind.payload(kind.created, row), str(row.id))
            return store.named_public(row)

    @router.get(
        f"{kind.path}/{{id}}",
        response_model=NamedPublic,
        summary=f"One {kind.noun}",
        operation_id=f"get_{snake}",
    )
    async def get(id: IdPath, _: Reader, session: ReadSession) -> NamedPublic:
        return store.named_public(await one(session, id))

    @router.patch(
        f"{kind.path}/{{id}}",
        response_model=NamedPublic,
        summary=f"Change a {kind.noun}",
        operation_id=f"update_{snake}",
    )
    async def update(id: IdPath, body: NamedUpdate, _: Operator, db: DatabaseDep) -> NamedPublic:
        async with db.transaction() as session:
            row = await one(session, id, lock=True)
            if body.name is not None and body.name != row.name:
                if row.name == store.DEFAULT:
                    raise Conflict(f"the default {kind.noun} cannot be renamed", field="body.name")
                await name_free(session, body.name)
                row.name = body.name
            if body.description is not None:
                row.description = body.description
            row.updated_at = utcnow()
            session.add(row)
            store.stage(session, kind.payload(kind.updated, row), str(row.id))
            return store.named_public(row)

    @router.delete(
        f"{kind.path}/{{id}}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary=f"Delete an empty {kind.noun}",
        operation_id=f"delete_{snake}",
    )
    async def delete(id: IdPath, _: Operator, db: DatabaseDep) -> Response:
        async with db.transaction() as session:
            row = await one(session, id, lock=True)
            if row.name == store.DEFAULT:
                raise Conflict(f"the default {kind.noun} cannot be deleted", field="path.id")
            used = await session.exec(select(Machine).where(getattr(Machine, kind.column) == id))
            if used.first() is not None:
                raise Conflict(f"{kind.noun} {row.name} still holds machines", field="path.id")
            await session.delete(row)
            store.stage(session, kind.payload(kind.deleted, row), str(row.id))
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
