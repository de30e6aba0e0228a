"""Machines on real services: ipam, boot, power and the api on one nats-server, each with its
own database; the api is started (and restarted) by the test, with the settings it needs.

The BMC is OpenIPMI's ipmi_sim (the power tests' fixture); KVM hosts are libvirt's test
driver with the compose tests' host files (their ``compose`` fixture brings compose + ipam).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from metalbus.api.app import create_app
from metalbus.api.settings import ApiSettings
from metalbus.boot.service import DEFINITION as BOOT
from metalbus.boot.settings import BootSettings
from metalbus.ipam.service import DEFINITION as IPAM
from metalbus.ipam.settings import IpamSettings
from metalbus.power.settings import PowerSettings
from metalbus.shared.bus import Bus
from metalbus.shared.commands import Command
from metalbus.shared.contract import boot as b
from metalbus.shared.contract import ipam as ip
from metalbus.shared.runtime import ServiceRuntime
from metalbus.shared.subjects import stream_name
from tests.api.conftest import SPANS, tracing  # noqa: F401 (spans in memory: a fixture)
from tests.boot.test_real_clients import veth  # noqa: F401 (fixture)
from tests.compose.conftest import (  # noqa: F401 (fixtures)
    ComposeUnderTest,
    compose,
    compose_settings,
)
from tests.conftest import DatabaseFactory
from tests.helpers import InLoopServer, NatsServer, async_wait_for
from tests.power.conftest import PowerUnderTest, ipmi_sim, power_settings, start_power  # noqa: F401

TOKEN = "mb_000000000001.admin-secret-for-tests-only-0123456789"
V1 = "/api/v1"
FAST = {
    "outbox_poll_s": 0.2,
    "flow_poll_s": 0.2,
    "flow_retry_s": 0.1,
    "flow_retry_max_s": 0.5,
    "timeout_sweep_s": 0.2,
    "callback_url": "http://10.0.0.1:5240",
}


@dataclass
class Api:
    """One running api process (app + uvicorn in the test's loop) and a client to it."""

    server: InLoopServer
    client: httpx.AsyncClient

    async def stop(self) -> None:
        await self.client.aclose()
        await self.server.__aexit__(None, None, None)


@dataclass
class Stack:
    """ipam and power running; boot and the api started by the test."""

    nats: NatsServer
    ipam: ServiceRuntime
    bus: Bus
    databases: dict[str, tuple[str, str | None]]
    power: PowerUnderTest | None = None
    boot: ServiceRuntime | None = None
    api: Api | None = None
    api_settings: dict[str, Any] = field(default_factory=dict)
    power_settings: PowerSettings | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        assert self.api is not None
        return self.api.client

    async def call(
        self, command: Command[Any, Any], request: BaseModel | None = None, **fields: Any
    ) -> Any:
        return await self.bus.request(command, request or command.request(**fields))

    async def start_api(self, **settings: Any) -> Api:
        self.api_settings = settings or self.api_settings
        url, schema = self.databases["api"]
        app = create_app(
            ApiSettings(
                nats_url=self.nats.url,
                database_url=url,
                database_schema=schema,
                port=0,
                bootstrap_token=TOKEN,
                **{**FAST, **self.api_settings},
            )
        )
        server = InLoopServer(app)
        base = await server.__aenter__()
        client = httpx.AsyncClient(
            base_url=base + V1, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        self.api = Api(server, client)
        return self.api

    async def stop_api(self) -> None:
        if self.api is not None:
            await self.api.stop()
            self.api = None

    async def start_power(self) -> PowerUnderTest:
        # The same settings (and sealing key) again on a restart: the BMCs' secrets open.
        if self.power_settings is None:
            self.power_settings = power_settings(self.nats.url, self.databases["power"])
        self.power = await start_power(self.power_settings)
        return self.power

    async def stop_power(self) -> None:
        if self.power is not None:
            await self.power.rt.stop()
            self.power = None

    async def start_boot(self, **settings: Any) -> ServiceRuntime:
        url, schema = self.databases["boot"]
        self.boot = ServiceRuntime(
            BOOT,
            BootSettings(
                nats_url=self.nats.url,
                database_url=url,
                database_schema=schema,
                outbox_poll_s=0.2,
                **settings,
            ),
        )
        await self.boot.start()
        return self.boot

    # -- helpers the tests share ----------------------------------------------------------

    async def machine(self, system_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/machines/{system_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def wait_machine(self, system_id: str, what: str, **expected: Any) -> dict[str, Any]:
        """Poll the machine until every ``expected`` field has its value."""

        async def matches() -> dict[str, Any] | None:
            found = await self.machine(system_id)
            return found if all(found[k] == v for k, v in expected.items()) else None

        result: dict[str, Any] = await async_wait_for(matches, 30, what)
        return result

    async def boot_config(self, mac: str) -> b.BootConfigInfo:
        return await self.call(b.BOOT_CONFIG_GET, mac=mac)  # type: ignore[no-any-return]

    async def boot_token(self, mac: str, purpose: str) -> str:
        """The callback token in ``mac``'s boot config (what its kernel command line carries)."""
        config = await self.boot_config(mac)
        assert config.purpose == purpose, config
        match = re.search(r"metalbus\.token=(\S+)", config.cmdline)
        assert match is not None, config.cmdline
        return match.group(1)

    async def report_result(
        self, system_id: str, mac: str, purpose: str, result: str = "success", **extra: str
    ) -> dict[str, Any]:
        """Post what a deploy or testing environment posts when it is done."""
        token = await self.boot_token(mac, purpose)
        response = await self.http.post(
            f"/machines/{system_id}/callback/result",
            json={"result": result, **extra},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def consumer_idle(self, stream_service: str, durable: str) -> bool:
        info = await self.bus.js.consumer_info(stream_name(stream_service), durable)
        return info.num_pending == 0 and info.num_ack_pending == 0

    async def serve_dhcp(self, cidr: str, gateway: str, start: str, end: str) -> ip.Subnet:
        """A fabric whose untagged VLAN serves DHCP on ``cidr`` from ``start``-``end``."""
        fabric = await self.call(ip.FABRIC_CREATE, name=None)
        subnet = await self.call(
            ip.SUBNET_CREATE, cidr=cidr, vlan_id=fabric.default_vlan_id, gateway_ip=gateway
        )
        await self.call(ip.RANGE_CREATE, type="dynamic", start_ip=start, end_ip=end)
        await self.call(
            ip.VLAN_UPDATE, id=fabric.default_vlan_id, changes=ip.VlanUpdate(dhcp_on=True)
        )
        return subnet  # type: ignore[no-any-return]


@pytest.fixture
async def stack(nats_server: NatsServer, db_factory: DatabaseFactory) -> AsyncIterator[Stack]:
    url, schema = db_factory()
    ipam = ServiceRuntime(
        IPAM,
        IpamSettings(
            nats_url=nats_server.url, database_url=url, database_schema=schema, outbox_poll_s=0.2
        ),
    )
    await ipam.start()
    bus = await Bus.connect(nats_server.url, service="tests")
    databases = {name: db_factory() for name in ("api", "power", "boot")}
    s = Stack(nats_server, ipam, bus, databases)
    try:
        await s.start_power()
        yield s
    finally:
        await s.stop_api()
        if s.boot is not None:
            await s.boot.stop()
        await s.stop_power()
        await bus.close()
        await ipam.stop()


@pytest.fixture
async def compose_stack(
    compose: ComposeUnderTest,  # noqa: F811 (the compose tests' fixture, imported above)
    nats_server: NatsServer,
    db_factory: DatabaseFactory,
) -> AsyncIterator[Stack]:
    """compose and its ipam (the compose tests' fixture), boot, power, and an api started by
    the test."""
    bus = await Bus.connect(nats_server.url, service="tests")
    databases = {name: db_factory() for name in ("api", "boot", "power")}
    s = Stack(nats_server, compose.ipam, bus, databases)
    try:
        await s.start_boot()
        await s.start_power()
        yield s
    finally:
        await s.stop_api()
        if s.boot is not None:
            await s.boot.stop()
        await s.stop_power()
        await bus.close()


async def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that must have ``status``."""
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def ready_machine(
    stack: Stack, power: dict[str, Any] | None, mac: str = "52:54:00:00:00:01"
) -> str:
    """A machine added by hand and commissioned (the test posts the hardware): Ready."""
    body: dict[str, Any] = {"interfaces": [{"name": "eth0", "mac": mac}]}
    if power is not None:
        body["power"] = power
    sid: str = (await ok(await stack.http.post("/machines", json=body), 201))["system_id"]
    await ok(await stack.http.post(f"/machines/{sid}/commission"), 202)
    await stack.wait_machine(
        sid, "commissioning to wait for the callback", flow_step="wait_callback"
    )
    token = await stack.boot_token(mac, "commissioning")
    await ok(
        await stack.http.post(
            f"/machines/{sid}/callback/commissioning",
            json={"cores": 2, "memory": 4096, "interfaces": [{"name": "eth0", "mac": mac}]},
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    await stack.wait_machine(sid, "commissioning to settle", status="ready", flow=None)
    return sid
