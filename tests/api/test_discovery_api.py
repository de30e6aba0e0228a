"""``/api/v1/discovery`` forwarded to a real discovery service (beside the api and ipam)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from metalbus.discovery.service import DEFINITION as DISCOVERY
from metalbus.discovery.settings import DiscoverySettings
from metalbus.shared.runtime import ServiceRuntime
from tests.api.conftest import ApiUnderTest
from tests.conftest import DatabaseFactory


@pytest.fixture
async def discovery(api: ApiUnderTest, db_factory: DatabaseFactory) -> AsyncIterator[None]:
    url, schema = db_factory()
    runtime = ServiceRuntime(
        DISCOVERY,
        DiscoverySettings(
            nats_url=api.nats.url, database_url=url, database_schema=schema, scan_max_addresses=256
        ),
    )
    await runtime.start()
    try:
        yield
    finally:
        await runtime.stop()


async def test_discovery_routes_forward_and_name_the_fields(
    api: ApiUnderTest, discovery: None
) -> None:
    base = "/api/v1/discovery"
    page = await api.client.get(f"{base}/discoveries?unknown=both", headers=api.auth())
    assert page.status_code == 200, page.text
    assert page.json() == {"items": [], "next": None}

    bad = await api.client.get(f"{base}/discoveries?subnet_id=7", headers=api.auth())
    assert bad.status_code == 404 and bad.json()["field"] == "query.subnet_id"

    clear = await api.client.post(f"{base}/discoveries/clear", json={}, headers=api.auth())
    assert clear.status_code == 422 and clear.json()["field"] == "body.all"
    cleared = await api.client.post(
        f"{base}/discoveries/clear", json={"all": True}, headers=api.auth()
    )
    assert cleared.status_code == 200 and cleared.json() == {"cleared": 0}

    big = await api.client.post(f"{base}/scans", json={"cidr": "10.0.0.0/16"}, headers=api.auth())
    assert big.status_code == 422 and big.json()["field"] == "body.cidr"
    assert "at most 256" in big.json()["detail"]

    unknown = await api.client.post(
        f"{base}/discoveries/make-known",
        json={"ip": "10.0.0.5", "mac": "52:54:00:00:00:05"},
        headers=api.auth(),
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "body.ip"
    probe = await api.client.post(f"{base}/dhcp-probe", headers=api.auth())
    assert probe.status_code == 422 and probe.json()["field"] == "body.interface"

    missing = await api.client.get(f"{base}/scans/5", headers=api.auth())
    assert missing.status_code == 404 and missing.json()["field"] == "path.id"
    scans = await api.client.get(f"{base}/scans", headers=api.auth())
    assert scans.status_code == 200 and scans.json()["items"] == []
    assert (await api.client.get(f"{base}/scans")).status_code == 401
