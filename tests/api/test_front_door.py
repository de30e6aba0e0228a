"""The path HTTP -> api -> NATS -> service: replies, bus failures, traces, the event log and SSE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
from opentelemetry.trace import SpanKind

from metalbus.shared.commands import ping
from tests.api.conftest import SPANS, ApiUnderTest
from tests.helpers import async_wait_for

TOKEN_CREATED = "io.metalbus.api.token.created.v1"
TOKEN_REVOKED = "io.metalbus.api.token.revoked.v1"


async def test_ping_goes_over_the_bus_to_the_service(api: ApiUnderTest) -> None:
    response = await api.client.get("/api/v1/services/ipam/ping", headers=api.auth())
    assert response.status_code == 200
    assert response.json()["service"] == "ipam"
    assert response.json()["instance"] == api.ipam.settings.instance_id
    statuses = {
        s["service"]: s
        for s in (await api.client.get("/api/v1/services", headers=api.auth())).json()
    }
    assert statuses["ipam"]["ready"] is True and statuses["api"]["ready"] is True
    assert statuses["boot"]["ready"] is False
    assert "no boot service" in statuses["boot"]["checks"][0]["detail"]
    unknown = await api.client.get("/api/v1/services/dhcpd/ping", headers=api.auth())
    assert unknown.status_code == 422 and unknown.json()["field"] == "path.service"


async def test_no_responders_is_a_clean_503(api: ApiUnderTest) -> None:
    await api.ipam.stop()
    response = await asyncio.wait_for(
        api.client.get("/api/v1/services/ipam/ping", headers=api.auth()), 5
    )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "service_unavailable"


async def test_a_service_that_does_not_answer_is_a_504(api: ApiUnderTest) -> None:
    silent = await nats.connect(api.nats.url)
    try:
        await silent.subscribe(ping("boot").subject, cb=_ignore)
        await silent.flush()
        response = await api.client.get("/api/v1/services/boot/ping", headers=api.auth())
        assert response.status_code == 504
        assert response.json()["code"] == "timeout"
    finally:
        await silent.close()


async def _ignore(_: Any) -> None:
    return None


async def test_one_trace_runs_from_http_through_nats_into_the_service(api: ApiUnderTest) -> None:
    SPANS.clear()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await api.client.get(
        "/api/v1/services/ipam/ping",
        headers={**api.auth(), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert response.status_code == 200

    def spans() -> dict[str, Any]:
        return {s.name: s for s in SPANS.get_finished_spans()}

    await async_wait_for(lambda: "metalbus.cmd.ipam.ping process" in spans(), 5, "the service span")
    by_name = spans()
    http = by_name["GET /api/v1/services/{service}/ping"]
    client = by_name["metalbus.cmd.ipam.ping request"]
    server = by_name["metalbus.cmd.ipam.ping process"]
    assert {format(s.context.trace_id, "032x") for s in (http, client, server)} == {trace_id}
    assert http.kind == SpanKind.SERVER and http.parent.span_id == 0x00F067AA0BA902B7
    assert client.kind == SpanKind.CLIENT and client.parent.span_id == http.context.span_id
    assert server.kind == SpanKind.SERVER and server.parent.span_id == client.context.span_id
    assert http.attributes["http.route"] == "/api/v1/services/{service}/ping"


async def create_tokens(api: ApiUnderTest, count: int) -> list[str]:
    ids = []
    for i in range(count):
        response = await api.client.post(
            "/api/v1/tokens", json={"name": f"t{i}", "role": "readonly"}, headers=api.auth()
        )
        ids.append(response.json()["id"])
    return ids


async def logged(api: ApiUnderTest, type_: str, count: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        page = (
            await api.client.get(
                "/api/v1/events",
                params={"type": type_, "after": 0, "limit": 1000},
                headers=api.auth(),
            )
        ).json()
        return page["items"] if len(page["items"]) >= count else None

    return await async_wait_for(enough, 10, f"{count} {type_} events in the log")  # type: ignore[no-any-return]


async def test_event_log_pages_and_filters(api: ApiUnderTest) -> None:
    ids = await create_tokens(api, 5)
    await api.client.delete(f"/api/v1/tokens/{ids[0]}", headers=api.auth())
    created = await logged(api, TOKEN_CREATED, 6)  # the bootstrap admin's and ours
    assert [e["subject"] for e in created][-5:] == ids
    await logged(api, TOKEN_REVOKED, 1)

    seen: list[int] = []
    cursor: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "type": "io.metalbus.api.token.*"}
        if cursor is not None:
            params["before"] = cursor
        page = (await api.client.get("/api/v1/events", params=params, headers=api.auth())).json()
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == 7 and seen == sorted(seen, reverse=True)

    only_revoked = (
        await api.client.get("/api/v1/events", params={"type": TOKEN_REVOKED}, headers=api.auth())
    ).json()["items"]
    assert [e["subject"] for e in only_revoked] == [ids[0]]
    one = await api.client.get(f"/api/v1/events/{only_revoked[0]['id']}", headers=api.auth())
    assert one.json()["data"] == {"token_id": ids[0], "revoked_by": "000000000001"}
    assert (await api.client.get("/api/v1/events/nope", headers=api.auth())).status_code == 404
    bad = await api.client.get("/api/v1/events", params={"type": "io.*.x"}, headers=api.auth())
    assert bad.status_code == 422 and bad.json()["field"] == "query.type"


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    frame: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in frame:
                yield frame
            frame = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            frame[key] = value


async def first_events(
    api: ApiUnderTest,
    count: int,
    params: dict[str, str],
    headers: dict[str, str] | None = None,
    during: Any = None,
) -> list[dict[str, str]]:
    got: list[dict[str, str]] = []
    async with api.client.stream(
        "GET", "/api/v1/events/stream", params=params, headers={**api.auth(), **(headers or {})}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        if during is not None:
            await during()

        async def collect() -> None:
            async for frame in sse_events(response):
                got.append(frame)
                if len(got) == count:
                    return

        await asyncio.wait_for(collect(), 10)
    return got


async def test_live_stream_filters_by_type_and_resumes_from_the_log(api: ApiUnderTest) -> None:
    ids = await create_tokens(api, 1)

    async def revoke() -> None:
        await create_tokens(api, 1)  # a created event the filter must hold back
        await api.client.delete(f"/api/v1/tokens/{ids[0]}", headers=api.auth())

    live = await first_events(api, 1, {"type": TOKEN_REVOKED}, during=revoke)
    assert live[0]["event"] == TOKEN_REVOKED
    envelope = json.loads(live[0]["data"])
    assert envelope["subject"] == ids[0] and envelope["id"] == live[0]["id"]

    created = await logged(api, TOKEN_CREATED, 3)
    resumed = await first_events(
        api, 2, {"type": TOKEN_CREATED}, headers={"Last-Event-ID": created[0]["id"]}
    )
    assert [json.loads(f["data"])["subject"] for f in resumed] == [
        e["subject"] for e in created[1:3]
    ]
