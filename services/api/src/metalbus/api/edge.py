"""The HTTP edge middleware: request ids and the server span every trace starts from.

Plain ASGI (not ``BaseHTTPMiddleware``) so it adds almost nothing per request and does
not buffer streaming responses such as the event stream.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metalbus.shared import telemetry
from metalbus.shared.logs import request_id_var

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TRACE_HEADERS = (b"traceparent", b"tracestate", b"baggage")


class EdgeMiddleware:
    """Tag each request with an id (``X-Request-ID``, kept from the client when sane) and a span."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        carrier: dict[str, str] = {}
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value.decode("latin-1")
            elif key in _TRACE_HEADERS:
                carrier[key.decode()] = value.decode("latin-1")
        if not _REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        token = request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            if telemetry.enabled():
                await self._traced(scope, receive, send_with_id, carrier, request_id)
            else:
                # No tracer installed: skip building spans that nobody records.
                await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)

    async def _traced(
        self, scope: Scope, receive: Receive, send: Send, carrier: dict[str, str], request_id: str
    ) -> None:
        method = scope["method"]
        status: dict[str, Any] = {}

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        with telemetry.span(
            f"{method} {scope['path']}",
            carrier=carrier,
            kind=trace.SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope["path"],
                "metalbus.request_id": request_id,
            },
        ) as span:
            await self.app(scope, receive, send_with_status)
            route = scope.get("route")
            if route is not None and hasattr(route, "path"):
                span.update_name(f"{method} {route.path}")
                span.set_attribute("http.route", route.path)
            if "code" in status:
                span.set_attribute("http.response.status_code", status["code"])
