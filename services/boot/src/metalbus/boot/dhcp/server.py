"""The DHCP server's sockets: one UDP socket per interface, bound to that device.

A client without an address broadcasts from 0.0.0.0, so each socket is bound to the
wildcard address on the DHCP port and to its device (``SO_BINDTODEVICE``): it hears only
its interface's broadcasts, and its own broadcasts leave through that interface. Replies
go as RFC 2131 4.1 says: to the relay (giaddr, server port) when relayed; to ``ciaddr``
when the client has an address; otherwise broadcast (we never unicast to an address the
client does not yet answer ARP for, which would need a raw socket).

Each packet is decided at once from memory; a reply that makes or extends a lease waits
for the group commit that writes it (:class:`~metalbus.boot.dhcp.store.LeaseWriter`).
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import Counter, Gauge, Histogram

from metalbus.shared.metrics import ServiceMetrics
from metalbus.shared.tasks import cancel_all

from ..settings import BootSettings
from .codec import ZERO_IP, MalformedPacket, MessageType, Packet, build, parse
from .engine import Decision, Engine, Interface, PxeSeen, client_key
from .leases import Lease
from .store import Change, LeaseWriter

log = logging.getLogger(__name__)

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
# Replies waiting for their lease to be written, at most. Past it the server is behind by
# seconds (clients retransmit after 1-4 s): new packets are dropped (``overloaded``) rather
# than queued, so a burst costs bounded memory and the backlog drains instead of growing.
MAX_PENDING_COMMITS = 4096
SIOCGIFADDR = 0x8915
LIMITED_BROADCAST = "255.255.255.255"


class InterfaceError(OSError):
    """An interface DHCP was told to listen on is missing or has no IPv4 address."""


def interface_address(name: str) -> str:
    """The first IPv4 address of interface ``name`` (the server identifier on it).

    Raises:
        InterfaceError: no such interface, or it has no IPv4 address.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            raw = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError as exc:
            raise InterfaceError(f"interface {name} has no IPv4 address: {exc}") from exc
    return socket.inet_ntoa(raw[20:24])


def open_socket(device: str, port: int) -> socket.socket:
    """A non-blocking UDP socket on ``0.0.0.0:port`` that only sees ``device``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device.encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(("0.0.0.0", port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class DhcpMetrics:
    """What the DHCP server counts, on the service's ``/metrics``."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        registry = metrics.registry
        self.received = Counter(
            "metalbus_dhcp_received", "DHCP packets received", ["type"], registry=registry
        ).labels
        self.sent = Counter(
            "metalbus_dhcp_sent", "DHCP replies sent", ["type"], registry=registry
        ).labels
        self.dropped = Counter(
            "metalbus_dhcp_dropped",
            "DHCP packets not answered, by reason (malformed: not DHCP at all)",
            ["reason"],
            registry=registry,
        ).labels
        self.leases = Gauge("metalbus_dhcp_leases", "Leases held in memory", registry=registry)
        self.commit_seconds = Histogram(
            "metalbus_dhcp_commit_wait_seconds",
            "Time an ACK waited for its lease to be written",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=registry,
        )
        self.batch_size = Histogram(
            "metalbus_dhcp_commit_batch_size",
            "Lease changes written per transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: DhcpServer, iface: Interface, boot_server: bool = False) -> None:
        self.server = server
        self.iface = iface
        self.boot_server = boot_server  # port 4011: PXE boot server discovery
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport does not subclass DatagramTransport, but is one.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.server.received(self, data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DHCP socket on %s: %s", self.iface.name, exc)


class DhcpServer:
    """Listens on the configured interfaces and answers with :class:`Engine`'s decisions."""

    def __init__(
        self,
        settings: BootSettings,
        engine: Engine,
        writer: LeaseWriter,
        metrics: DhcpMetrics,
        on_pxe: Callable[[PxeSeen], None],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.writer = writer
        self.metrics = metrics
        self.on_pxe = on_pxe
        self._protocols: list[_Protocol] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._committing: dict[str, int] = {}  # client key -> replies waiting for the disk

    async def start(self) -> None:
        """Open a socket on each interface.

        Raises:
            InterfaceError: an interface is missing or has no IPv4 address.
            OSError: the port cannot be bound (another DHCP server, or not root).
        """
        loop = asyncio.get_running_loop()
        settings = self.settings
        ports = [(settings.dhcp_port, False)]
        if settings.dhcp_mode == "proxy" and settings.dhcp_pxe_port:
            ports.append((settings.dhcp_pxe_port, True))
        for name in settings.dhcp_interfaces:
            iface = Interface(name, interface_address(name))
            for port, boot_server in ports:
                sock = open_socket(name, port)
                _, protocol = await loop.create_datagram_endpoint(
                    functools.partial(_Protocol, self, iface, boot_server), sock=sock
                )
                self._protocols.append(protocol)
                log.info("DHCP on %s (%s) port %d", name, iface.address, port)

    async def stop(self) -> None:
        """Close the sockets; replies still waiting for their commit are not sent."""
        for protocol in self._protocols:
            if protocol.transport is not None:
                protocol.transport.close()
        self._protocols.clear()
        await cancel_all(self._pending)

    # -- one packet --------------------------------------------------------------------

    def received(self, protocol: _Protocol, data: bytes, source: tuple[str, int]) -> None:
        """Decide at once; send now, or after the lease is written."""
        try:
            packet = parse(data)
        except MalformedPacket as exc:
            self.metrics.dropped("malformed").inc()
            log.debug("malformed DHCP packet on %s: %s", protocol.iface.name, exc)
            return
        kind = packet.message_type
        self.metrics.received(kind.name.lower() if kind else "bootp").inc()
        if len(self._pending) >= MAX_PENDING_COMMITS:
            self.metrics.dropped("overloaded").inc()
            return
        if kind is MessageType.REQUEST and client_key(packet) in self._committing:
            # A retransmission while its ACK waits for the disk: that ACK answers it. Deciding
            # again would queue one more write of the same lease (under load, each retry
            # slows the writes that make clients retry).
            self.metrics.dropped("commit_pending").inc()
            return
        if protocol.boot_server:  # no lease is made there: answered at once, to the sender
            decision = self.engine.boot_server(packet, protocol.iface)
            if decision.pxe is not None:
                self.on_pxe(decision.pxe)
            if decision.dropped is not None:
                self.metrics.dropped(decision.dropped).inc()
            self._send(protocol, packet, decision.reply, source)
            return
        decision = self.engine.handle(packet, protocol.iface, time.time())
        if decision.pxe is not None:
            self.on_pxe(decision.pxe)
        if decision.dropped is not None:
            self.metrics.dropped(decision.dropped).inc()
        changes = [Change(lease, reason) for lease, reason in decision.ended]
        if decision.commit is not None:
            changes.append(Change(decision.commit))
        if not changes:
            self._send(protocol, packet, decision.reply)
            return
        key = client_key(packet)
        self._committing[key] = self._committing.get(key, 0) + 1  # before the task starts
        task = asyncio.create_task(self._commit_then_send(protocol, packet, decision, changes, key))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _commit_then_send(
        self,
        protocol: _Protocol,
        packet: Packet,
        decision: Decision,
        changes: list[Change],
        key: str,
    ) -> None:
        started = time.perf_counter()
        try:
            await self.writer.write(*changes)
        except Exception:
            # Not durable, so not promised: undo in memory and stay silent; the client
            # retries and gets a fresh decision.
            self._undo(decision)
            self.metrics.dropped("not_written").inc()
            return
        finally:
            left = self._committing.pop(key) - 1
            if left:
                self._committing[key] = left
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.leases.set(len(self.engine.leases))
        self._send(protocol, packet, decision.reply)

    def _undo(self, decision: Decision) -> None:
        leases = self.engine.leases
        if decision.commit is not None:
            leases.drop(decision.commit)
            if decision.previous is not None:
                leases.put(decision.previous)
        for lease, _ in decision.ended:
            if leases.of_client(lease.client_key) is None:
                leases.put(lease)

    def _send(
        self,
        protocol: _Protocol,
        request: Packet,
        reply: Packet | None,
        source: tuple[str, int] | None = None,
    ) -> None:
        if reply is None or protocol.transport is None:
            return
        port = self.settings.dhcp_client_port
        kind = reply.message_type
        if source is not None:
            destination = source
        elif request.giaddr != ZERO_IP:
            destination = (request.giaddr, self.settings.dhcp_port)
        elif request.ciaddr != ZERO_IP and kind is not MessageType.NAK:
            destination = (request.ciaddr, port)
        else:
            destination = (LIMITED_BROADCAST, port)
        try:
            protocol.transport.sendto(build(reply), destination)
        except (OSError, MalformedPacket) as exc:
            self.metrics.dropped("send_failed").inc()
            log.warning("DHCP reply to %s on %s failed: %s", destination, protocol.iface.name, exc)
            return
        self.metrics.sent(kind.name.lower() if kind else "bootp").inc()

    # -- housekeeping ------------------------------------------------------------------

    async def expire(self) -> int:
        """End the leases whose time is up (written, and reported to ipam); returns how many."""
        now = time.time()
        leases = self.engine.leases
        leases.forget_stale(now)
        gone: list[Lease] = leases.expired(now)
        for lease in gone:
            leases.drop(lease)
        if gone:
            try:
                await self.writer.write(*(Change(lease, "expired") for lease in gone))
            except Exception:
                for lease in gone:  # try again next sweep
                    if leases.of_client(lease.client_key) is None:
                        leases.put(lease)
                raise
        self.metrics.leases.set(len(leases))
        return len(gone)
