"""An ipam service on a real nats-server and a real database, and a bus client to drive it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from metalbus.ipam.service import DEFINITION as IPAM
from metalbus.ipam.settings import IpamSettings
from metalbus.shared.bus import Bus
from metalbus.shared.commands import Command
from metalbus.shared.runtime import ServiceRuntime
from tests.conftest import DatabaseFactory
from tests.helpers import NatsServer


@dataclass
class IpamUnderTest:
    """A running ipam and a client bus; ``call`` sends one command and returns the reply."""

    runtime: ServiceRuntime
    bus: Bus
    nats: NatsServer

    async def call(
        self, command: Command[Any, Any], request: BaseModel | None = None, **fields: Any
    ) -> Any:
        payload = request if request is not None else command.request(**fields)
        return await self.bus.request(command, payload)


@pytest.fixture
async def ipam(
    nats_server: NatsServer, db_factory: DatabaseFactory
) -> AsyncIterator[IpamUnderTest]:
    url, schema = db_factory()
    runtime = ServiceRuntime(
        IPAM,
        IpamSettings(
            nats_url=nats_server.url,
            database_url=url,
            database_schema=schema,
            outbox_poll_s=0.2,
            lease_sweep_s=0.2,
        ),
    )
    await runtime.start()
    bus = await Bus.connect(nats_server.url, service="tests")
    try:
        yield IpamUnderTest(runtime, bus, nats_server)
    finally:
        await bus.close()
        await runtime.stop()
