"""``/api/v1/power`` through the real api (uvicorn, tokens, bus) to the power service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from metalbus.api.app import create_app
from metalbus.api.settings import ApiSettings
from tests.conftest import DatabaseFactory
from tests.helpers import InLoopServer, NatsServer
from tests.power.conftest import WEBHOOK_TOKEN, PowerUnderTest, Webhook, power_settings, start_power

ADMIN = "mb_000000000001.admin-secret-for-tests-only-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def client(
    nats_server: NatsServer, db_factory: DatabaseFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, PowerUnderTest]]:
    url, schema = db_factory()
    settings = ApiSettings(
        nats_url=nats_server.url,
        database_url=url,
        database_schema=schema,
        port=0,
        bootstrap_token=ADMIN,
    )
    power = await start_power(power_settings(nats_server.url, db_factory()))
    try:
        async with (
            InLoopServer(create_app(settings)) as base,
            httpx.AsyncClient(base_url=base, timeout=30, headers=AUTH) as http,
        ):
            yield http, power
    finally:
        await power.rt.stop()


async def test_bmc_crud_and_power_actions_over_http(
    client: tuple[httpx.AsyncClient, PowerUnderTest], webhook: Webhook
) -> None:
    http, _ = client
    drivers = (await http.get("/api/v1/power/drivers")).json()["drivers"]
    by_name = {d["name"]: d for d in drivers}
    assert set(by_name) == {"ipmi", "redfish", "virsh", "webhook", "manual"}
    assert by_name["ipmi"]["secret_fields"] == ["kg", "password"]
    assert by_name["ipmi"]["settings_schema"]["properties"]["password"]["writeOnly"] is True
    assert by_name["manual"]["can_query"] is False

    created = await http.post(
        "/api/v1/power/bmcs",
        json={"name": "hook", "driver": "webhook", "settings": webhook.settings()},
    )
    assert created.status_code == 201, created.text
    bmc = created.json()
    assert WEBHOOK_TOKEN not in created.text and bmc["secrets_set"] == ["token"]

    on = await http.post(f"/api/v1/power/bmcs/{bmc['id']}/on")
    assert on.status_code == 200, on.text
    assert on.json()["power_state"] == "on" and webhook.state["running"]
    off = await http.post(f"/api/v1/power/bmcs/{bmc['id']}/off", json={"soft": False})
    assert off.json()["power_state"] == "off"
    listed = (await http.get("/api/v1/power/bmcs", params={"power_state": "off"})).json()
    assert [b["id"] for b in listed["items"]] == [bmc["id"]]
    patched = await http.patch(f"/api/v1/power/bmcs/{bmc['id']}", json={"name": "renamed"})
    assert patched.json()["name"] == "renamed" and patched.json()["secrets_set"] == ["token"]
    assert (await http.delete(f"/api/v1/power/bmcs/{bmc['id']}")).status_code == 204
    assert (await http.get(f"/api/v1/power/bmcs/{bmc['id']}")).status_code == 404


async def test_faults_are_problems_naming_the_field(
    client: tuple[httpx.AsyncClient, PowerUnderTest], webhook: Webhook
) -> None:
    http, power = client
    bad = await http.post(
        "/api/v1/power/bmcs",
        json={"name": "x", "driver": "ipmi", "settings": {"address": "h", "username": "u"}},
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["field"] == "body.settings.password"
    assert (await http.get("/api/v1/power/bmcs")).json()["items"] == []

    bmc = (
        await http.post(
            "/api/v1/power/bmcs",
            json={"name": "hook", "driver": "webhook", "settings": webhook.settings()},
        )
    ).json()
    soft = await http.post(f"/api/v1/power/bmcs/{bmc['id']}/off", json={"soft": True})
    assert (soft.status_code, soft.json()["field"]) == (409, "body.soft")
    wrong = await http.patch(
        f"/api/v1/power/bmcs/{bmc['id']}", json={"settings": {"power_query_method": "BREW"}}
    )
    assert (wrong.status_code, wrong.json()["field"]) == (422, "body.settings.power_query_method")
    missing = await http.post("/api/v1/power/bmcs/999/on")
    assert (missing.status_code, missing.json()["field"]) == (404, "path.id")

    await power.rt.stop()  # no power service: a clean 503, not a hang
    gone = await http.post(f"/api/v1/power/bmcs/{bmc['id']}/query")
    assert gone.status_code == 503 and gone.json()["code"] == "service_unavailable"
