"""A real ipam and discovery on one nats-server, and a network namespace to watch.

The namespace (``link``) is joined to this host by a veth pair: the service listens on
the host's end (10.213.9.1/24, fd00:213:9::1/64), the peers live inside the namespace.
Traffic stays on that pair. Needs root; everything is deleted afterwards, even on failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop
from nats.aio.msg import Msg
from pydantic import BaseModel

from metalbus.discovery.service import DEFINITION as DISCOVERY
from metalbus.discovery.settings import DiscoverySettings
from metalbus.ipam.service import DEFINITION as IPAM
from metalbus.ipam.settings import IpamSettings
from metalbus.shared import subjects
from metalbus.shared.bus import Bus
from metalbus.shared.commands import Command
from metalbus.shared.contract import ipam as c
from metalbus.shared.events import EventPayload, decode_event
from metalbus.shared.runtime import ServiceRuntime
from tests.conftest import DatabaseFactory, skip_or_fail
from tests.helpers import NatsServer

HOST_IP = "10.213.9.1"
HOST_IP6 = "fd00:213:9::1"


@dataclass
class Link:
    namespace: str
    host: str  # this host's end: the service listens here
    peer: str  # the namespace's end
    peer_mac: str


def ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], check=True, capture_output=True, text=True).stdout


async def run_in(link: Link, *argv: str) -> str:
    """Run a program inside the namespace; fail with its output when it fails."""
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        link.namespace,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


async def announce(link: Link, address: str, device: str | None = None) -> None:
    """An unsolicited (gratuitous) ARP for ``address`` from the namespace (iputils arping)."""
    await run_in(link, "arping", "-q", "-U", "-c", "1", "-I", device or link.peer, address)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """uvloop, the services' loop in production (it lacks some of asyncio's socket calls)."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def link() -> Iterator[Link]:
    if os.geteuid() != 0:
        skip_or_fail("discovery's namespace tests need root (network namespaces, raw sockets)")
    for tool in ("ip", "arping"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (scripts/install-system-packages.sh)")
    tag = uuid.uuid4().hex[:6]
    made = Link(f"mbdisc-{tag}", f"mbd{tag}h", f"mbd{tag}p", "")
    try:
        ip("netns", "add", made.namespace)
        ip("link", "add", made.host, "type", "veth", "peer", "name", made.peer)
        ip("link", "set", made.peer, "netns", made.namespace)
        ip("addr", "add", f"{HOST_IP}/24", "dev", made.host)
        ip("-6", "addr", "add", f"{HOST_IP6}/64", "dev", made.host, "nodad")
        ip("link", "set", made.host, "up")
        ip("-n", made.namespace, "link", "set", "lo", "up")
        ip("-n", made.namespace, "link", "set", made.peer, "up")
        made.peer_mac = ip("-n", made.namespace, "-br", "link", "show", made.peer).split()[2]
        yield made
    finally:
        for pid in subprocess.run(
            ["ip", "netns", "pids", made.namespace], capture_output=True, text=True
        ).stdout.split():
            os.kill(int(pid), signal.SIGKILL)  # programs this test started in its namespace
        subprocess.run(["ip", "netns", "del", made.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", made.host], capture_output=True)


@dataclass
class Stack:
    """ipam running; discovery started (and restarted) by the test with its settings."""

    nats: NatsServer
    ipam: ServiceRuntime
    bus: Bus
    discovery_database: tuple[str, str | None]
    events: list[EventPayload] = field(default_factory=list)
    discovery: ServiceRuntime | None = None

    async def call(
        self, command: Command[Any, Any], request: BaseModel | None = None, **fields: Any
    ) -> Any:
        return await self.bus.request(command, request or command.request(**fields))

    async def start_discovery(self, **settings: Any) -> ServiceRuntime:
        url, schema = self.discovery_database
        self.discovery = ServiceRuntime(
            DISCOVERY,
            DiscoverySettings(
                nats_url=self.nats.url,
                database_url=url,
                database_schema=schema,
                outbox_poll_s=0.2,
                flush_interval_s=0.05,
                **settings,
            ),
        )
        await self.discovery.start()
        # Bus.serve does not flush its subscriptions: a PING round trip makes sure the
        # server has them before the test's first request.
        await self.discovery.bus.nc.flush()
        return self.discovery

    async def stop_discovery(self) -> None:
        if self.discovery is not None:
            await self.discovery.stop()
            self.discovery = None

    def metric(self, name: str, **labels: str) -> float:
        assert self.discovery is not None
        return self.discovery.metrics.registry.get_sample_value(name, labels) or 0.0

    def seen(self, kind: type[EventPayload], **fields: Any) -> list[Any]:
        """The events of ``kind`` received so far whose fields match."""
        return [
            e
            for e in self.events
            if isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items())
        ]

    async def subnet(self, cidr: str) -> c.Subnet:
        fabric = await self.call(c.FABRIC_CREATE, name=None)
        return await self.call(c.SUBNET_CREATE, cidr=cidr, vlan_id=fabric.default_vlan_id)


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
    made = Stack(nats_server, ipam, bus, db_factory())

    async def collect(msg: Msg) -> None:
        made.events.append(decode_event(msg.data).data)  # type: ignore[arg-type]

    await bus.subscribe_events(subjects.service_events("discovery"), collect)
    try:
        yield made
    finally:
        await made.stop_discovery()
        await bus.close()
        await ipam.stop()
