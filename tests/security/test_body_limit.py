"""Request size limit: a body over METALBUS_API_MAX_BODY_BYTES is a 413 problem+json naming
``body``, whether its length is declared or it comes chunked, and nothing is written. And
NUL characters (which PostgreSQL cannot hold) are a 422 naming where they were."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from tests.api.conftest import ApiUnderTest


def _fabric(name: str, size: int) -> bytes:
    """A valid fabric of ``size`` bytes: JSON padded with whitespace (over the limit, only
    its size is wrong)."""
    body = json.dumps({"name": name}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


async def test_bodies_over_the_limit_are_413_and_change_nothing(api: ApiUnderTest) -> None:
    limit = api.app_settings.max_body_bytes
    headers = {**api.auth(), "Content-Type": "application/json"}
    too_big = _fabric("big", limit + 1)

    declared = await api.client.post("/api/v1/fabrics", content=too_big, headers=headers)
    # no Content-Length: httpx sends an async iterator chunked
    chunked = await api.client.post("/api/v1/fabrics", content=_chunks(too_big), headers=headers)
    for response in (declared, chunked):
        assert response.status_code == 413, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "too_large" and problem["field"] == "body"
        assert str(limit) in problem["detail"]
        assert problem["request_id"] == response.headers["x-request-id"]
    assert "transfer-encoding" not in declared.request.headers
    assert chunked.request.headers["transfer-encoding"] == "chunked"

    listed = await api.client.get("/api/v1/fabrics", headers=api.auth())
    assert all(f["name"] != "big" for f in listed.json()["items"])

    # within the limit, chunked or not, the body reaches the route whole
    for name in ("fits", "fits-chunked"):
        fits = _fabric(name, limit)
        content = _chunks(fits) if name == "fits-chunked" else fits
        made = await api.client.post("/api/v1/fabrics", content=content, headers=headers)
        assert made.status_code == 201, made.text
        assert made.json()["name"] == name


async def test_a_nul_in_a_query_or_body_is_a_422_naming_it(api: ApiUnderTest) -> None:
    # Found by schemathesis: PostgreSQL refuses text holding NUL (the lookup answered 500).
    response = await api.client.get(
        "/api/v1/machines", params={"zone": "dmz\x00"}, headers=api.auth()
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "query.zone"
    response = await api.client.get("/api/v1/machines/abc%00", headers=api.auth())
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "path.system_id"
    # and in a JSON body, named by its path (no pool was made)
    body = {"name": "w", "description": "a\x00b"}
    response = await api.client.post("/api/v1/pools", json=body, headers=api.auth())
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "body.description"
    pools = await api.client.get("/api/v1/pools", headers=api.auth())
    assert all(p["name"] != "w" for p in pools.json())
