"""Authentication, roles and problem+json at the HTTP edge."""

from __future__ import annotations

import pytest

from tests.api.conftest import ADMIN_TOKEN, ApiUnderTest

PROBLEM = "application/problem+json"


async def make_token(api: ApiUnderTest, role: str, **extra: object) -> dict[str, object]:
    response = await api.client.post(
        "/api/v1/tokens", json={"name": f"{role} token", "role": role, **extra}, headers=api.auth()
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer mb_000000000001.wrong-secret-but-long-enough-00000"},
        {"Authorization": "Bearer mb_ffffffffffff.no-such-token-but-long-enough-0000"},
    ],
    ids=["missing", "malformed", "basic", "wrong-secret", "unknown-id"],
)
async def test_missing_or_bad_token_is_401(api: ApiUnderTest, headers: dict[str, str]) -> None:
    response = await api.client.get("/api/v1/whoami", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["code"] == "unauthorized" and body["status"] == 401
    assert body["request_id"] == response.headers["x-request-id"]


async def test_health_needs_no_token_but_everything_else_does(api: ApiUnderTest) -> None:
    assert (await api.client.get("/healthz")).status_code == 200
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert "metalbus_bus_connected 1.0" in (await api.client.get("/metrics")).text
    openapi = (await api.client.get("/api/v1/openapi.json")).json()
    for path, methods in openapi["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method in methods:
            concrete = (
                path.replace("{service}", "ipam")
                .replace("{token_id}", "x")
                .replace("{event_id}", "x")
            )
            response = await api.client.request(method.upper(), concrete)
            assert response.status_code == 401, (
                f"{method.upper()} {path} answered {response.status_code}"
            )


async def test_wrong_role_is_403(api: ApiUnderTest) -> None:
    readonly = await make_token(api, "readonly")
    operator = await make_token(api, "operator")
    for token in (readonly["token"], operator["token"]):
        response = await api.client.post(
            "/api/v1/tokens", json={"name": "x", "role": "admin"}, headers=api.auth(str(token))
        )
        assert response.status_code == 403
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "forbidden"
    # ...while reading is allowed to both.
    whoami = await api.client.get("/api/v1/whoami", headers=api.auth(str(readonly["token"])))
    assert whoami.status_code == 200 and whoami.json()["role"] == "readonly"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "role": "superuser"}, "body.role"),
        ({"role": "admin"}, "body.name"),
        ({"name": "", "role": "admin"}, "body.name"),
        ({"name": "x", "role": "admin", "expires_in_days": -1}, "body.expires_in_days"),
        ({"name": "x", "role": "admin", "colour": "red"}, "body.colour"),
    ],
)
async def test_malformed_body_is_422_naming_the_field(
    api: ApiUnderTest, body: dict[str, object], field: str
) -> None:
    before = (await api.client.get("/api/v1/tokens", headers=api.auth())).json()
    response = await api.client.post("/api/v1/tokens", json=body, headers=api.auth())
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert problem["field"] == field
    assert field in [e["field"] for e in problem["errors"]]
    assert (
        await api.client.get("/api/v1/tokens", headers=api.auth())
    ).json() == before  # nothing changed


async def test_not_json_is_422_not_500(api: ApiUnderTest) -> None:
    response = await api.client.post(
        "/api/v1/tokens",
        content=b"{not json",
        headers={**api.auth(), "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_tokens_are_listed_without_secrets_and_revoked_at_once(api: ApiUnderTest) -> None:
    issued = await make_token(api, "operator", expires_in_days=1)
    secret = str(issued["token"])
    assert secret.startswith(f"mb_{issued['id']}.")
    listing = await api.client.get("/api/v1/tokens", headers=api.auth())
    assert secret.split(".", 1)[1] not in listing.text
    assert {t["id"] for t in listing.json()} >= {issued["id"], ADMIN_TOKEN[3:15]}
    assert (await api.client.get("/api/v1/whoami", headers=api.auth(secret))).status_code == 200

    revoked = await api.client.delete(f"/api/v1/tokens/{issued['id']}", headers=api.auth())
    assert revoked.status_code == 204
    response = await api.client.get("/api/v1/whoami", headers=api.auth(secret))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    missing = await api.client.delete("/api/v1/tokens/ffffffffffff", headers=api.auth())
    assert missing.status_code == 404 and missing.json()["field"] == "token_id"


async def test_request_id_is_kept_when_sane_and_replaced_when_not(api: ApiUnderTest) -> None:
    kept = await api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    replaced = await api.client.get("/healthz", headers={"X-Request-ID": "bad id\twith junk"})
    assert replaced.headers["x-request-id"] != "bad id\twith junk"
    assert len(replaced.headers["x-request-id"]) == 32


async def test_create_token_on_the_host_reaches_a_running_api(api: ApiUnderTest) -> None:
    """The recovery path for a lost admin token: python -m metalbus.api create-token."""
    import asyncio
    import os
    import subprocess
    import sys

    settings = api.app_settings
    env = {
        **os.environ,
        "METALBUS_API_DATABASE_URL": settings.database_url,
        "METALBUS_API_LOG_LEVEL": "ERROR",
    }
    if settings.database_schema:
        env["METALBUS_API_DATABASE_SCHEMA"] = settings.database_schema
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "metalbus.api",
            "create-token",
            "--role",
            "operator",
            "--name",
            "recovery",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    minted = result.stdout.strip()
    whoami = await api.client.get("/api/v1/whoami", headers=api.auth(minted))
    assert whoami.status_code == 200
    assert whoami.json()["role"] == "operator" and whoami.json()["name"] == "recovery"


async def test_openapi_documents_the_problems_the_api_really_returns(api: ApiUnderTest) -> None:
    import jsonschema

    document = (await api.client.get("/api/v1/openapi.json")).json()
    schema = {"$ref": "#/components/schemas/Problem", "components": document["components"]}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(answer["content"]) == ["application/problem+json"], (
                        path,
                        method,
                        status,
                    )
    answers = [
        await api.client.get("/api/v1/whoami"),
        await api.client.post("/api/v1/tokens", json={"role": "x"}, headers=api.auth()),
        await api.client.delete("/api/v1/tokens/nope", headers=api.auth()),
    ]
    for answer in answers:
        jsonschema.validate(answer.json(), schema)
