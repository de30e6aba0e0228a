"""The API's errors as exceptions: every problem+json answer becomes an :class:`ApiError`.

The subclass says what kind of failure it was (so a caller can catch ``NotFound`` alone);
each carries the problem document's ``status``, ``title``, ``detail``, ``code`` and the
``field`` at fault (``body.host_ip``, ``path.id``, ``query.limit``) when the API names one.
"""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(Exception):
    """Anything the client raises."""


class ConnectionFailed(ClientError):
    """The API could not be reached (refused, timed out, name unknown, TLS)."""


class ApiError(ClientError):
    """An error answer from the API (an RFC 9457 problem document)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        code: str | None = None,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code
        self.field = field
        self.errors = errors or []
        self.request_id = request_id


class BadInput(ApiError):
    """400 or 422: the request does not validate; ``field`` names the input at fault."""


class Unauthorized(ApiError):
    """401: no token, or one that is unknown, expired or revoked."""


class Forbidden(ApiError):
    """403: the token's role does not allow this."""


class NotFound(ApiError):
    """404: no such object."""


class Conflict(ApiError):
    """409: taken, overlapping, in use or exhausted."""


class Unavailable(ApiError):
    """503 or 504: the service that owns this did not answer."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadInput,
    422: BadInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    503: Unavailable,
    504: Unavailable,
}


def error_from(response: httpx.Response) -> ApiError:
    """The exception for an error answer (a non-problem body still gives a readable one)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": response.text.strip() or response.reason_phrase}
    status = response.status_code
    kind = _BY_STATUS.get(status, ApiError)
    return kind(
        status,
        str(body.get("title") or response.reason_phrase or "Error"),
        str(body.get("detail") or ""),
        code=body.get("code"),
        field=body.get("field"),
        errors=body.get("errors"),
        request_id=body.get("request_id"),
    )
