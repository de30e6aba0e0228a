"""Errors at the HTTP edge: every failure is an RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from metalbus.shared.errors import (
    ERRORS_BY_CODE,
    BadRequest,
    InternalError,
    MetalbusError,
    Unauthorized,
)
from metalbus.shared.logs import request_id_var
from metalbus.shared.telemetry import current_trace_id

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    422: "Validation error",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
    504: "Gateway timeout",
}
_CODES = {cls.http_status: cls.code for cls in reversed(ERRORS_BY_CODE.values())}


def problem(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build a problem document; ``code`` is a stable code of :mod:`metalbus.shared.errors`."""
    body: dict[str, Any] = {
        "type": f"urn:metalbus:problem:{code}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
    }
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = errors
    if request_id := request_id_var.get():
        body["request_id"] = request_id
    if trace_id := current_trace_id():
        body["trace_id"] = trace_id
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    """Map every kind of failure onto problem+json."""

    @app.exception_handler(MetalbusError)
    async def on_metalbus_error(request: Request, exc: MetalbusError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        if exc.http_status >= 500:
            log.warning("request failed: %s", exc.message, extra={"code": exc.code})
        return problem(
            request, exc.http_status, exc.code, exc.message, field=exc.field, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        return problem(
            request,
            422,
            "validation_error",
            f"{first['field']}: {first['message']}",
            field=first["field"],
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code) or (
            BadRequest.code if exc.status_code < 500 else InternalError.code
        )
        return problem(request, exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            request, 500, InternalError.code, "an unexpected error occurred; see the logs"
        )
