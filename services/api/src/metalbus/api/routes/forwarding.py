"""Forwarding an HTTP request to a service over the bus, its faults named as the client sees them.

A service (ipam, compose) names a faulty field after its request model (``cidr``, ``start_ip``,
``changes.gateway_ip``, ``id``); the client put that value in the body, the path, the query
or a header. :func:`forward` is the one place that renames it (``body.cidr``, ``path.id``).
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Path
from pydantic import BaseModel

from metalbus.shared.bus import Bus
from metalbus.shared.commands import Command
from metalbus.shared.contract.ipam import ObjectId
from metalbus.shared.errors import MetalbusError

Req = TypeVar("Req", bound=BaseModel)
Resp = TypeVar("Resp", bound=BaseModel)

IdPath = Annotated[ObjectId, Path(description="the object's id")]
_LOCATIONS = ("body", "path", "query", "header")


class Where:
    """Where the client put each field of a bus request.

    ``Where("body", id="path.id", changes="body")`` names ``cidr`` ``body.cidr`` (the
    default location), ``id`` ``path.id`` and ``changes.gateway_ip`` ``body.gateway_ip``
    (a field's first segment is replaced by the name given for it).
    """

    __slots__ = ("default", "names")

    def __init__(self, default: str, **names: str) -> None:
        self.default = default
        self.names = names

    def name(self, field: str) -> str:
        """The HTTP name of a request model's field (already located names are kept)."""
        head, dot, rest = field.partition(".")
        if head in _LOCATIONS:
            return field
        if head in self.names:
            return self.names[head] + dot + rest
        return f"{self.default}.{field}"


BODY = Where("body")
"""A create or release: the request model is the body."""
QUERY = Where("query")
"""A list: the request model is the query string."""
PATH = Where("path")
"""A get (``ById``): the id is in the path."""
CHANGES = Where("body", id="path.id", changes="body")
"""A PATCH (``UpdateRequest``): the id is in the path, the changes are the body."""


async def forward(bus: Bus, command: Command[Req, Resp], request: Req, where: Where) -> Resp:
    """Send ``request`` to the service that owns ``command`` and return its answer.

    Raises:
        MetalbusError: the service's typed error, its ``field`` named after where the
            client put it (``where``); errors without a field pass through unchanged.
    """
    try:
        return await bus.request(command, request)
    except MetalbusError as exc:
        if exc.field is None:
            raise
        raise type(exc)(exc.message, field=where.name(exc.field), details=exc.details) from exc
