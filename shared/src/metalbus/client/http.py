"""The two clients: :class:`Client` (blocking) and :class:`AsyncClient`, over httpx.

Both send :class:`~.calls.Call` objects built by :mod:`.ops`, return the contract models
the API answers with, and raise :mod:`.errors` exceptions for problem+json answers and
unreachable APIs::

    with Client("http://127.0.0.1:5240", token) as mb:
        fabric = mb.send(ops.fabrics.create({"name": "dc1"}))
        for subnet in mb.each(ops.subnets.list):
            print(subnet.cidr)

    async with AsyncClient(url, token) as mb:
        async for event in mb.stream_events(["io.metalbus.compose.*"]):
            print(event.type)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from metalbus.shared import __version__
from metalbus.shared.contract.ipam import Page
from metalbus.shared.events import RawEvent

from . import ops
from .calls import Call
from .errors import ConnectionFailed, error_from

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
H = TypeVar("H", httpx.Client, httpx.AsyncClient)
# The stream is quiet between events (the server sends a heartbeat comment): no read timeout.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=None)


def base_url(url: str) -> str:
    """``http://host:5240`` from what a user may type (a trailing ``/`` or ``/api/v1``)."""
    url = url.strip().rstrip("/")
    return url.removesuffix(ops.API).rstrip("/")


class _Base(Generic[H]):
    def __init__(self, http: H, url: str) -> None:
        self.url = url
        self.http: H = http

    @staticmethod
    def _http_args(url: str, token: str | None, timeout: float) -> dict[str, Any]:
        headers = {"User-Agent": f"metalbus-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return {"base_url": url, "headers": headers, "timeout": timeout}

    @staticmethod
    def _request(call: Call[Any]) -> httpx.Request | dict[str, Any]:
        args: dict[str, Any] = {
            "method": call.route.method,
            "url": call.url,
            "params": call.params(),
            "headers": dict(call.headers),
        }
        if call.body is not None:
            args["json"] = call.body
        return args

    @staticmethod
    def _answer(call: Call[T], response: httpx.Response) -> T:
        if response.is_error:
            raise error_from(response)
        if call.response is None or not response.content:
            return None  # type: ignore[return-value]
        return call.parse(response.json())

    def _unreachable(self, exc: httpx.TransportError) -> ConnectionFailed:
        return ConnectionFailed(f"cannot reach {self.url}: {exc or type(exc).__name__}")

    @staticmethod
    def _stream_headers(last_event_id: str | None) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        return headers


class Client(_Base[httpx.Client]):
    """The blocking client. ``transport`` is for tests and proxies (httpx's)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 130.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = base_url(url)
        super().__init__(
            httpx.Client(transport=transport, **self._http_args(url, token, timeout)), url
        )

    def send(self, call: Call[T]) -> T:
        try:
            response = self.http.request(**self._request(call))  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return self._answer(call, response)

    def each(self, listing: Callable[..., Call[Page[M]]], **query: Any) -> Iterator[M]:
        """Every object of a paged list, page after page."""
        after = 0
        while True:
            page = self.send(listing(after=after, **query))
            yield from page.items
            if page.next is None:
                return
            after = page.next

    def stream_events(
        self, types: Iterable[str] = (), last_event_id: str | None = None
    ) -> Iterator[RawEvent]:
        """The live events (``types``: exact, or a prefix ending in ``*``), until closed."""
        params = httpx.QueryParams([("type", t) for t in types])
        headers = self._stream_headers(last_event_id)
        try:
            with self.http.stream(
                "GET",
                ops.events.stream.path,
                params=params,
                headers=headers,
                timeout=STREAM_TIMEOUT,
            ) as response:
                if response.is_error:
                    response.read()
                    raise error_from(response)
                yield from parse_sse(response.iter_lines())
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncClient(_Base[httpx.AsyncClient]):
    """The asyncio client: the same calls, awaited."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 130.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url = base_url(url)
        http = httpx.AsyncClient(transport=transport, **self._http_args(url, token, timeout))
        super().__init__(http, url)

    async def send(self, call: Call[T]) -> T:
        try:
            response = await self.http.request(**self._request(call))  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return self._answer(call, response)

    async def each(self, listing: Callable[..., Call[Page[M]]], **query: Any) -> AsyncIterator[M]:
        after = 0
        while True:
            page = await self.send(listing(after=after, **query))
            for item in page.items:
                yield item
            if page.next is None:
                return
            after = page.next

    async def stream_events(
        self,
        types: Iterable[str] = (),
        last_event_id: str | None = None,
        connected: asyncio.Event | None = None,
    ) -> AsyncIterator[RawEvent]:
        """The live events; ``connected`` is set once the server listens for this stream
        (so a caller can start an operation and be sure to see all its events)."""
        params = httpx.QueryParams([("type", t) for t in types])
        headers = self._stream_headers(last_event_id)
        try:
            async with self.http.stream(
                "GET",
                ops.events.stream.path,
                params=params,
                headers=headers,
                timeout=STREAM_TIMEOUT,
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise error_from(response)
                if connected is not None:
                    connected.set()
                parser = SseParser()
                async for line in response.aiter_lines():
                    if (event := parser.feed(line)) is not None:
                        yield event
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class SseParser:
    """Server-Sent Events, line by line: an event ends at a blank line; comments (the
    server's heartbeats) start with ``:``. Only ``data`` matters: it is the envelope."""

    def __init__(self) -> None:
        self.data: list[str] = []

    def feed(self, line: str) -> RawEvent | None:
        if not line:
            data, self.data = self.data, []
            return RawEvent.model_validate_json("\n".join(data)) if data else None
        if line.startswith("data:"):
            self.data.append(line[5:].removeprefix(" "))
        return None


def parse_sse(lines: Iterable[str]) -> Iterator[RawEvent]:
    parser = SseParser()
    for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event
