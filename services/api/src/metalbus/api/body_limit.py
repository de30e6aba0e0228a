"""Request size limit: a body over ``max_body_bytes`` is answered 413 problem+json.

Plain ASGI, like the edge middleware. A declared ``Content-Length`` over the limit is
refused before any byte is read; a body without one (chunked) is read up to the limit and
refused as soon as it passes it, so a client can never make the API hold more than the
limit in memory. A body within the limit is handed on unchanged; after it, ``receive``
is the server's again (the event stream waits on it for the client's disconnect).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metalbus.shared.errors import PayloadTooLarge

from . import problems


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with a 413 naming ``body``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: the app sees the disconnect
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is over {self.max_bytes} bytes"
        response = problems.problem(Request(scope), 413, PayloadTooLarge.code, detail, field="body")
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server (h11) refuses a malformed one before we run
    return None
