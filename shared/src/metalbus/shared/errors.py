"""One typed error hierarchy for the whole system, with stable codes.

The code is the contract: clients (the API, the CLI, other services) switch on it,
never on the message. Each edge maps these errors once:

- HTTP: ``application/problem+json`` with ``type`` ending in the code and the HTTP status below.
- Bus (request/reply): nats.micro error headers (``Nats-Service-Error-Code`` = HTTP status,
  ``Nats-Service-Error`` = message) and the JSON of :meth:`MetalbusError.to_dict` as the body.
- JetStream consumers: :attr:`MetalbusError.retryable` decides nak (try again) or term (drop).
"""

from __future__ import annotations

from typing import Any, ClassVar


class MetalbusError(Exception):
    """Base of every error metalbus raises on purpose.

    Args:
        message: one readable sentence for an operator.
        field: the input field at fault, as a dotted path (``body.cidr``), when there is one.
        details: extra machine-readable facts (never secrets).
    """

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(
        self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The wire form of the error."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.details:
            out["details"] = self.details
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> MetalbusError:
        """Rebuild the typed error from its wire form (unknown codes become InternalError)."""
        cls = ERRORS_BY_CODE.get(str(data.get("code")), InternalError)
        err = cls(
            str(data.get("message") or cls.code),
            field=data.get("field"),
            details=data.get("details") or None,
        )
        return err

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, field={self.field!r})"


class ValidationFailed(MetalbusError):
    """Input is malformed or breaks a rule; nothing was changed."""

    code = "validation_error"
    http_status = 422


class BadRequest(MetalbusError):
    """The request cannot be understood (not JSON, wrong content type)."""

    code = "bad_request"
    http_status = 400


class NotFound(MetalbusError):
    """The named object does not exist."""

    code = "not_found"
    http_status = 404


class MethodNotAllowed(MetalbusError):
    """The path exists but not with this method."""

    code = "method_not_allowed"
    http_status = 405


class PayloadTooLarge(MetalbusError):
    """The request body is larger than the service accepts."""

    code = "too_large"
    http_status = 413


class Conflict(MetalbusError):
    """The request is well formed but collides with current state (taken, in use, exhausted)."""

    code = "conflict"
    http_status = 409


class AddressExhausted(Conflict):
    """No free address is left where one was asked for (a subnet, a range)."""

    code = "address_exhausted"


class Unauthorized(MetalbusError):
    """No credentials, or credentials that are not valid."""

    code = "unauthorized"
    http_status = 401


class Forbidden(MetalbusError):
    """Valid credentials without the right to do this."""

    code = "forbidden"
    http_status = 403


class RateLimited(MetalbusError):
    """Too many requests; try again later."""

    code = "rate_limited"
    http_status = 429
    retryable = True


class ServiceUnavailable(MetalbusError):
    """The service that owns this is not reachable (no responders, bus down)."""

    code = "service_unavailable"
    http_status = 503
    retryable = True


class RequestTimeout(MetalbusError):
    """The owning service did not answer in time; the request may or may not have happened."""

    code = "timeout"
    http_status = 504
    retryable = True


class InternalError(MetalbusError):
    """A bug or an unexpected failure; the message is safe to show, the details are logged."""

    code = "internal_error"
    http_status = 500


ERRORS_BY_CODE: dict[str, type[MetalbusError]] = {
    cls.code: cls
    for cls in (
        ValidationFailed,
        BadRequest,
        NotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        Conflict,
        AddressExhausted,
        Unauthorized,
        Forbidden,
        RateLimited,
        ServiceUnavailable,
        RequestTimeout,
        InternalError,
    )
}
