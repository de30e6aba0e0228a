"""An api service (real FastAPI app, real uvicorn, real bus and database) and an ipam beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from metalbus.api.app import create_app
from metalbus.api.settings import ApiSettings
from metalbus.ipam.service import DEFINITION as IPAM
from metalbus.ipam.settings import IpamSettings
from metalbus.shared.runtime import ServiceRuntime
from tests.conftest import DatabaseFactory
from tests.helpers import InLoopServer, NatsServer

ADMIN_TOKEN = "mb_000000000001.admin-secret-for-tests-only-0123456789"
SPANS = InMemorySpanExporter()


@pytest.fixture(scope="session", autouse=True)
def tracing() -> None:
    """One tracer provider for the test process, exporting to memory."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(provider)


@dataclass
class ApiUnderTest:
    url: str
    client: httpx.AsyncClient
    app_settings: ApiSettings
    ipam: ServiceRuntime
    nats: NatsServer

    def auth(self, token: str = ADMIN_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def api_settings(nats_url: str, database: tuple[str, str | None]) -> ApiSettings:
    """Settings of an api under test: a random port, the admin token, quick SSE heartbeats."""
    url, schema = database
    return ApiSettings(
        nats_url=nats_url,
        database_url=url,
        database_schema=schema,
        port=0,
        bootstrap_token=ADMIN_TOKEN,
        sse_heartbeat_s=0.5,
    )


@pytest.fixture
async def api(nats_server: NatsServer, db_factory: DatabaseFactory) -> AsyncIterator[ApiUnderTest]:
    settings = api_settings(nats_server.url, db_factory())
    ipam_url, ipam_schema = db_factory()
    ipam = ServiceRuntime(
        IPAM,
        IpamSettings(nats_url=nats_server.url, database_url=ipam_url, database_schema=ipam_schema),
    )
    await ipam.start()
    try:
        async with (
            InLoopServer(create_app(settings)) as base,
            httpx.AsyncClient(base_url=base, timeout=10) as client,
        ):
            yield ApiUnderTest(base, client, settings, ipam, nats_server)
    finally:
        await ipam.stop()
