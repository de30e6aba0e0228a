"""A real ipam and a real boot service on one nats-server, each with its own database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel

from metalbus.boot.service import DEFINITION as BOOT
from metalbus.boot.settings import BootSettings
from metalbus.ipam.service import DEFINITION as IPAM
from metalbus.ipam.settings import IpamSettings
from metalbus.shared.bus import Bus
from metalbus.shared.commands import Command
from metalbus.shared.contract import ipam as c
from metalbus.shared.runtime import ServiceRuntime
from tests.conftest import DatabaseFactory
from tests.helpers import NatsServer


@dataclass
class Stack:
    """ipam running; boot started (and restarted) by the test with the settings it needs."""

    nats: NatsServer
    ipam: ServiceRuntime
    bus: Bus
    boot_database: tuple[str, str | None]
    boot: ServiceRuntime | None = None
    boot_settings: dict[str, Any] = field(default_factory=dict)

    async def call(
        self, command: Command[Any, Any], request: BaseModel | None = None, **fields: Any
    ) -> Any:
        return await self.bus.request(command, request or command.request(**fields))

    async def start_boot(self, **settings: Any) -> ServiceRuntime:
        self.boot_settings = settings or self.boot_settings
        url, schema = self.boot_database
        self.boot = ServiceRuntime(
            BOOT,
            BootSettings(
                nats_url=self.nats.url,
                database_url=url,
                database_schema=schema,
                outbox_poll_s=0.2,
                **self.boot_settings,
            ),
        )
        await self.boot.start()
        return self.boot

    async def stop_boot(self) -> None:
        if self.boot is not None:
            await self.boot.stop()
            self.boot = None

    def metric(self, name: str, **labels: str) -> float:
        assert self.boot is not None
        return self.boot.metrics.registry.get_sample_value(name, labels) or 0.0

    async def serve(
        self, cidr: str, gateway: str, start: str, end: str, **subnet: Any
    ) -> tuple[c.Subnet, c.Vlan]:
        """A fabric whose untagged VLAN serves DHCP on ``cidr`` from ``start``-``end``."""
        fabric = await self.call(c.FABRIC_CREATE, name=None)
        created = await self.call(
            c.SUBNET_CREATE,
            cidr=cidr,
            vlan_id=fabric.default_vlan_id,
            gateway_ip=gateway,
            dns_servers=["10.250.0.53"],
            ntp_servers=["10.250.0.123"],
            domain="metalbus.test",
            **subnet,
        )
        await self.call(c.RANGE_CREATE, type="dynamic", start_ip=start, end_ip=end)
        vlan = await self.call(
            c.VLAN_UPDATE, id=fabric.default_vlan_id, changes=c.VlanUpdate(dhcp_on=True, mtu=1400)
        )
        return created, vlan

    async def addresses(self) -> dict[str, c.IpAddress]:
        page = await self.call(c.ADDRESS_LIST, limit=500)
        return {a.ip: a for a in page.items}


@pytest.fixture
async def stack(nats_server: NatsServer, db_factory: DatabaseFactory) -> AsyncIterator[Stack]:
    url, schema = db_factory()
    ipam = ServiceRuntime(
        IPAM,
        IpamSettings(
            nats_url=nats_server.url,
            database_url=url,
            database_schema=schema,
            outbox_poll_s=0.2,
            lease_sweep_s=0.2,
        ),
    )
    await ipam.start()
    bus = await Bus.connect(nats_server.url, service="tests")
    s = Stack(nats_server, ipam, bus, db_factory())
    try:
        yield s
    finally:
        await s.stop_boot()
        await bus.close()
        await ipam.stop()
