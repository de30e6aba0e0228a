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


class EdgeMiddleware:
    """Tag each request with an id (``X-Request-ID``, kept from the client when sane) and a span."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")
        if not _REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        token = request_id_var.set(request_id)
        method = scope["method"]
        status: dict[str, Any] = {}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            with telemetry.tracer().start_as_current_span(
                f"{method} {scope['path']}",
                context=telemetry.extract(headers),
                kind=trace.SpanKind.SERVER,
                attributes={
                    "http.request.method": method,
                    "url.path": scope["path"],
                    "metalbus.request_id": request_id,
                },
            ) as span:
                await self.app(scope, receive, send_with_id)
                route = scope.get("route")
                if route is not None and hasattr(route, "path"):
                    span.update_name(f"{method} {route.path}")
                    span.set_attribute("http.route", route.path)
                if "code" in status:
                    span.set_attribute("http.response.status_code", status["code"])
        finally:
            request_id_var.reset(token)
