"""The DHCP server under a backlog, on real sockets (loopback, a test socket as relay agent)
and a real SQLite database: the lease writer is started only once the packets are in, so
their ACKs are certainly still waiting for the disk. A retransmitted REQUEST then queues no
second write, and past ``MAX_PENDING_COMMITS`` new packets are dropped, not queued."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from metalbus.boot.dhcp import server as dhcp_server
from metalbus.boot.dhcp.codec import MessageType
from metalbus.boot.dhcp.engine import Engine
from metalbus.boot.dhcp.leases import LeaseTable
from metalbus.boot.dhcp.network import Network, SubnetView, VlanView
from metalbus.boot.dhcp.server import DhcpMetrics, DhcpServer
from metalbus.boot.dhcp.store import LeaseWriter
from metalbus.boot.service import MIGRATIONS
from metalbus.boot.settings import BootSettings
from metalbus.shared.db import Database
from metalbus.shared.metrics import ServiceMetrics
from metalbus.shared.tasks import cancel_all
from tests.boot.test_relay_loopback import RELAY, ip, relay, relayed, replies, send  # noqa: F401
from tests.helpers import async_wait_for


@dataclass
class Backlogged:
    server: DhcpServer
    writer: LeaseWriter
    metrics: ServiceMetrics
    batches: list[float]

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def backlogged(
    relay: tuple[socket.socket, int],  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[Backlogged]:
    _, port = relay
    settings = BootSettings(
        dhcp_interfaces=["lo"], dhcp_port=port, database_url=f"sqlite:///{tmp_path}/boot.db"
    )
    db = Database(settings.database_url)
    await db.migrate([MIGRATIONS])
    first, last = (int(ipaddress.IPv4Address(a)) for a in ("127.0.5.100", "127.0.5.199"))
    network = Network(
        vlans={1: VlanView(1, 1500, dhcp_on=True, relay_vlan_id=None)},
        subnets={
            1: SubnetView(
                id=1,
                network=ipaddress.IPv4Network("127.0.5.0/24"),
                vlan_id=1,
                gateway=RELAY,
                dns_servers=[],
                ntp_servers=[],
                domain=None,
                managed=True,
                disabled_boot_architectures=frozenset(),
                ranges={1: (first, last)},
            )
        },
        loaded=True,
    )
    metrics = ServiceMetrics("boot")
    batches: list[float] = []
    writer = LeaseWriter(db, batches.append)
    server = DhcpServer(
        settings,
        Engine(settings, network, LeaseTable()),
        writer,
        DhcpMetrics(metrics),
        lambda seen: None,
    )
    await server.start()
    try:
        yield Backlogged(server, writer, metrics, batches)
    finally:
        await server.stop()
        await db.dispose()


async def test_a_retransmitted_request_queues_no_second_write(
    backlogged: Backlogged,
    relay: tuple[socket.socket, int],  # noqa: F811
) -> None:
    sock, port = relay
    request = relayed(MessageType.REQUEST, 1, 7, o50=ip("127.0.5.101"))
    await send(sock, port, request)
    await send(sock, port, request)  # the client's retry, before the first is written
    received = "metalbus_dhcp_received_total"
    await async_wait_for(lambda: backlogged.metric(received, type="request") == 2, 5, "both")
    assert backlogged.metric("metalbus_dhcp_dropped_total", reason="commit_pending") == 1

    writing = asyncio.create_task(backlogged.writer.run())
    try:
        ack = (await replies(sock, 1))[7]
        assert ack.message_type is MessageType.ACK and ack.yiaddr == "127.0.5.101"
        assert backlogged.batches == [1]  # one lease written once
        # written: the next retry is decided again (a renewal), not dropped
        await send(sock, port, request)
        assert (await replies(sock, 1))[7].message_type is MessageType.ACK
        assert backlogged.metric("metalbus_dhcp_dropped_total", reason="commit_pending") == 1
    finally:
        await cancel_all({writing})


async def test_past_the_backlog_limit_packets_are_dropped_not_queued(
    backlogged: Backlogged,
    relay: tuple[socket.socket, int],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dhcp_server, "MAX_PENDING_COMMITS", 2)
    sock, port = relay
    for n in range(1, 4):  # three clients
        await send(sock, port, relayed(MessageType.REQUEST, n, n, o50=ip(f"127.0.5.{100 + n}")))
    received = "metalbus_dhcp_received_total"
    await async_wait_for(lambda: backlogged.metric(received, type="request") == 3, 5, "all")
    assert backlogged.metric("metalbus_dhcp_dropped_total", reason="overloaded") == 1

    writing = asyncio.create_task(backlogged.writer.run())
    try:
        acks = await replies(sock, 2)
        assert sorted(acks) == [1, 2]
        # the backlog drained: the third client's retry is answered
        await send(sock, port, relayed(MessageType.REQUEST, 3, 3, o50=ip("127.0.5.103")))
        assert (await replies(sock, 1))[3].yiaddr == "127.0.5.103"
    finally:
        await cancel_all({writing})
