"""The five routes of one kind of ipam object, made from its commands.

Fabrics, spaces, VLANs, subnets, static routes and IP ranges all have the same shape:
``GET`` and ``POST`` on the collection, ``GET``, ``PATCH`` and ``DELETE`` on one object.
The models come from the commands (request and response types), so each kind is declared
once (see :mod:`.network`) and its OpenAPI operations are as typed as hand-written ones.

Statuses: create answers 201 with the object, delete 204 with no body (the service
answers with the deleted object; the API does not repeat it), the others 200.
"""

# No ``from __future__ import annotations`` here: the endpoints are annotated with the
# kind's models, which are local variables; FastAPI must see them as types, not strings.

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel

from metalbus.shared.commands import Command
from metalbus.shared.contract.ipam import ById, DeleteRequest

from ...deps import BusDep, Operator, Reader
from ..forwarding import BODY, CHANGES, PATH, QUERY, IdPath, Where, forward


@dataclass(frozen=True)
class Kind:
    """One kind of ipam object as the API shows it.

    Attributes:
        path: the collection (``/fabrics``); one object is ``<path>/{id}``.
        noun: ``fabric``, ``static route``: names the operations (``create_fabric``).
        create: the create command; None when the collection has no ``POST``.
        force: what ``DELETE ...?force=true`` does; None when delete has no ``force``.
    """

    path: str
    noun: str
    create: Command[Any, Any] | None
    read: Command[ById, Any]
    listing: Command[Any, Any]
    update: Command[Any, Any]
    delete: Command[DeleteRequest, Any]
    force: str | None = None


def _changes_model(update: Command[Any, Any]) -> type[BaseModel]:
    """``FabricUpdate`` from the command taking ``UpdateRequest[FabricUpdate]``."""
    return update.request.model_fields["changes"].annotation  # type: ignore[no-any-return]


def add_routes(router: APIRouter, kind: Kind) -> None:
    """Add the collection and object routes of ``kind`` to ``router``."""
    one = f"{kind.path}/{{id}}"
    snake = kind.noun.lower().replace(" ", "_")
    Model = kind.read.response
    Query_ = kind.listing.request
    Changes = _changes_model(kind.update)

    async def list_objects(query: Annotated[Query_, Query()], _: Reader, bus: BusDep) -> BaseModel:
        return await forward(bus, kind.listing, query, QUERY)

    router.add_api_route(
        kind.path,
        list_objects,
        methods=["GET"],
        name=f"list_{snake}s",
        response_model=kind.listing.response,
        summary=f"{kind.listing.description} (paged: `after` the last id, `limit`)",
    )

    if kind.create is not None:
        create = kind.create
        Create = create.request

        async def create_object(body: Create, _: Operator, bus: BusDep) -> BaseModel:
            return await forward(bus, create, body, BODY)

        router.add_api_route(
            kind.path,
            create_object,
            methods=["POST"],
            name=f"create_{snake}",
            status_code=status.HTTP_201_CREATED,
            response_model=Model,
            summary=f"{create.description}: 201 with the new {kind.noun}",
        )

    async def read_object(id: IdPath, _: Reader, bus: BusDep) -> BaseModel:
        return await forward(bus, kind.read, ById(id=id), PATH)

    router.add_api_route(
        one,
        read_object,
        methods=["GET"],
        name=f"get_{snake}",
        response_model=Model,
        summary=kind.read.description,
    )

    async def update_object(id: IdPath, body: Changes, _: Operator, bus: BusDep) -> BaseModel:
        # ``body`` keeps the fields the JSON held (``model_fields_set``); UpdateRequest
        # sends only those, so a field left out stays and an explicit null clears.
        request = kind.update.request(id=id, changes=body)
        return await forward(bus, kind.update, request, CHANGES)

    router.add_api_route(
        one,
        update_object,
        methods=["PATCH"],
        name=f"update_{snake}",
        response_model=Model,
        summary=f"{kind.update.description} (only the fields sent change)",
    )

    if kind.force is None:

        async def delete_object(id: IdPath, _: Operator, bus: BusDep) -> Response:
            await forward(bus, kind.delete, DeleteRequest(id=id), PATH)
            return Response(status_code=status.HTTP_204_NO_CONTENT)

    else:
        Force = Annotated[bool, Query(description=kind.force)]

        async def delete_object(  # type: ignore[misc]
            id: IdPath, _: Operator, bus: BusDep, force: Force = False
        ) -> Response:
            request = DeleteRequest(id=id, force=force)
            await forward(bus, kind.delete, request, Where("path", force="query.force"))
            return Response(status_code=status.HTTP_204_NO_CONTENT)

    router.add_api_route(
        one,
        delete_object,
        methods=["DELETE"],
        name=f"delete_{snake}",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        summary=f"{kind.delete.description}: 204, no body",
    )
