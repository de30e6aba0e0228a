"""The metalbus Python client: ``Client`` (blocking) and ``AsyncClient`` over the HTTP API.

Requests are built by :mod:`metalbus.client.ops` and sent by either client; answers are
the shared contract models; errors are :mod:`metalbus.client.errors` exceptions carrying
the problem document's status, title, detail and field.
"""

from . import ops
from .calls import Call, Route
from .errors import (
    ApiError,
    BadInput,
    ClientError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    Unauthorized,
    Unavailable,
)
from .http import AsyncClient, Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadInput",
    "Call",
    "Client",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "NotFound",
    "Route",
    "Unauthorized",
    "Unavailable",
    "ops",
]
