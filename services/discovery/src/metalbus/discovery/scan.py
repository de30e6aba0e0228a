"""Active scans: an ARP request to every address of a directly attached IPv4 subnet.

A scan is refused unless the subnet lies inside a network configured on the interface
(so every request stays on that link) and holds at most ``scan_max_addresses`` addresses.
Every target is checked against the subnet again right before its request is sent: a scan
never asks for an address outside the subnet it was given. Requests are paced at
``scan_rate_pps``; answers are sightings like any other (through the interface's listener,
or the scan's own socket when the interface is not listened on).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable

from sqlmodel import col, select

from metalbus.shared.contract import ipam
from metalbus.shared.contract.discovery import (
    Scan,
    ScanById,
    ScanCompleted,
    ScanQuery,
    ScanRequest,
    ScanState,
)
from metalbus.shared.contract.ipam import Page
from metalbus.shared.db import Database
from metalbus.shared.errors import NotFound, ValidationFailed
from metalbus.shared.events import new_event, utcnow
from metalbus.shared.outbox import stage
from metalbus.shared.tasks import cancel_all

from .capture import CaptureMetrics, Listener, interface_mac, open_packet_socket
from .frames import ETH_P_ARP, Sighting, arp_request
from .models import ScanRow
from .settings import DiscoverySettings

log = logging.getLogger(__name__)


async def interface_networks(name: str) -> list[ipaddress.IPv4Interface]:
    """The IPv4 addresses (with their networks) configured on ``name`` (``ip -j addr``)."""
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "-j",
        "-4",
        "addr",
        "show",
        "dev",
        name,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        message = f"no interface {name}: {err.decode(errors='replace').strip()}"
        raise ValidationFailed(message, field="interface")
    found = []
    for link in json.loads(out or b"[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                found.append(ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}"))
    return found


def scan_public(row: ScanRow) -> Scan:
    """A stored scan as the contract shows it."""
    return Scan.model_validate(row, from_attributes=True)


class Scanner:
    """Starts scans, runs each in its own task, and reports them."""

    def __init__(
        self,
        db: Database,
        settings: DiscoverySettings,
        listeners: dict[str, Listener],
        observe: Callable[[str, Sighting], None],
        add_listener: Callable[[Callable[[str, Sighting], None]], Callable[[], None]],
        metrics: CaptureMetrics,
    ) -> None:
        self.metrics = metrics
        self.db = db
        self.settings = settings
        self.listeners = listeners
        self.observe = observe
        self.add_listener = add_listener
        self.running: dict[int, Scan] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def _attached(
        self, network: ipaddress.IPv4Network, interface: str | None
    ) -> tuple[str, ipaddress.IPv4Interface]:
        names = [interface] if interface else list(self.settings.interfaces)
        for name in names:
            for address in await interface_networks(name):
                if network.subnet_of(address.network):
                    return name, address
        where = f"interface {interface}" if interface else "any interface of the service"
        raise ValidationFailed(f"{network} is not directly attached to {where}", field="cidr")

    async def start(self, request: ScanRequest) -> Scan:
        """Check the request, record the scan, and start it; returns it as started."""
        try:
            network = ipaddress.ip_network(request.cidr, strict=True)
        except ValueError as exc:
            message = f"{request.cidr!r} is not a subnet: {exc}"
            raise ValidationFailed(message, field="cidr") from exc
        if not isinstance(network, ipaddress.IPv4Network):
            raise ValidationFailed("ARP scans are IPv4 only", field="cidr")
        if network.num_addresses > self.settings.scan_max_addresses:
            raise ValidationFailed(
                f"{network} has {network.num_addresses} addresses; at most "
                f"{self.settings.scan_max_addresses} may be scanned at once",
                field="cidr",
            )
        name, own = await self._attached(network, request.interface)
        targets = [a for a in _addresses(network) if a != own.ip]
        now = utcnow()
        async with self.db.transaction() as session:
            row = ScanRow(
                cidr=str(network),
                interface=name,
                state=ScanState.RUNNING.value,
                probes=len(targets),
                started_at=now,
            )
            session.add(row)
            await session.flush()
        scan = scan_public(row)
        self.running[scan.id] = scan
        task = asyncio.create_task(self._run(scan, network, own, targets))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return scan

    async def _run(
        self,
        scan: Scan,
        network: ipaddress.IPv4Network,
        own: ipaddress.IPv4Interface,
        targets: list[ipaddress.IPv4Address],
    ) -> None:
        answered: set[str] = set()

        def seen(interface: str, sighting: Sighting) -> None:
            if interface == scan.interface and sighting.vid is None:
                with contextlib.suppress(ValueError):
                    if ipaddress.IPv4Address(sighting.ip) in network:
                        answered.add(sighting.ip)

        remove = self.add_listener(seen)
        own_listener: Listener | None = None
        sock: socket.socket | None = None
        error: str | None = None
        try:
            if scan.interface not in self.listeners:
                # Nobody listens on this interface: the scan reads its own answers.
                own_listener = Listener(scan.interface, self.observe, self.metrics)  # ARP only
                own_listener.start()
            sock = open_packet_socket(scan.interface, ETH_P_ARP)
            mac = interface_mac(scan.interface)
            await self._send(scan, network, own.ip, mac, targets, sock)
            await asyncio.sleep(self.settings.scan_reply_wait_s)  # late answers still count
        except asyncio.CancelledError:
            error = "stopped with the service"
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("scan %s of %s failed: %s", scan.id, scan.cidr, error)
        finally:
            remove()
            if own_listener is not None:
                own_listener.stop()
            if sock is not None:
                sock.close()
            latest = self.running.pop(scan.id, scan)  # with its progress
            with contextlib.suppress(Exception):
                await asyncio.shield(self._finish(latest, len(answered), error))

    async def _send(
        self,
        scan: Scan,
        network: ipaddress.IPv4Network,
        source: ipaddress.IPv4Address,
        mac: bytes,
        targets: list[ipaddress.IPv4Address],
        sock: socket.socket,
    ) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.settings.scan_rate_pps
        due = loop.time()
        for target in targets:
            if target not in network:  # never: the targets come from the network itself
                raise RuntimeError(f"refusing to probe {target} outside {network}")
            frame = arp_request(mac, source, target)
            while True:
                try:
                    sock.send(frame)
                    break
                except BlockingIOError:
                    await asyncio.sleep(interval)  # the device queue is full: let it drain
            self.running[scan.id] = scan = scan.model_copy(update={"sent": scan.sent + 1})
            due += interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # deliberate pacing: scan_rate_pps

    async def _finish(self, scan: Scan, answered: int, error: str | None) -> None:
        async with self.db.transaction() as session:
            row = await session.get(ScanRow, scan.id)
            if row is None:
                return
            row.state = (ScanState.FAILED if error else ScanState.DONE).value
            row.sent = scan.sent
            row.answered = answered
            row.error = error
            row.finished_at = utcnow()
            session.add(row)
            await session.flush()
            done = ScanCompleted(scan=scan_public(row))
            stage(session, new_event(done, subject=f"scan/{row.id}"))

    async def scheduled(self, subnets: Callable[[], Awaitable[list[ipam.Subnet]]]) -> None:
        """Scan ipam's ``active_discovery`` subnets every ``active_scan_interval_s``.

        Only IPv4 subnets attached to an interface the service listens on, of at most
        ``scan_max_addresses`` addresses, are scanned; one already being scanned is skipped.
        """
        interval = self.settings.active_scan_interval_s
        while True:
            try:
                await self.scan_active(await subnets())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ipam may be away: the next round tries again
                log.warning("scheduled scans skipped this round: %s", exc)
            await asyncio.sleep(interval)  # deliberate interval between scheduled rounds

    async def scan_active(self, subnets: list[ipam.Subnet]) -> list[Scan]:
        """Start a scan of every active-discovery subnet that may be scanned here."""
        busy = {scan.cidr for scan in self.running.values()}
        started = []
        for subnet in subnets:
            if not subnet.active_discovery or subnet.ip_version != 4 or subnet.cidr in busy:
                continue
            try:
                started.append(await self.start(ScanRequest(cidr=subnet.cidr)))
            except ValidationFailed as exc:  # too large, or not attached here
                log.debug("not scanning %s: %s", subnet.cidr, exc.message)
        return started

    async def get(self, request: ScanById) -> Scan:
        """One scan (a running one with its progress on the replica running it)."""
        if request.id in self.running:
            return self.running[request.id]
        async with self.db.read() as session:
            row = await session.get(ScanRow, request.id)
        if row is None:
            raise NotFound(f"no scan {request.id}", field="id")
        return scan_public(row)

    async def list(self, request: ScanQuery) -> Page[Scan]:
        """Scans by id."""
        async with self.db.read() as session:
            rows = (
                await session.exec(
                    select(ScanRow)
                    .where(col(ScanRow.id) > request.after)
                    .order_by(col(ScanRow.id))
                    .limit(request.limit + 1)
                )
            ).all()
        items = [self.running.get(r.id or 0) or scan_public(r) for r in rows[: request.limit]]
        return Page[Scan](items=items, next=items[-1].id if len(rows) > request.limit else None)

    async def stop(self) -> None:
        """Cancel running scans (each records itself as failed)."""
        await cancel_all(self._tasks)


def _addresses(network: ipaddress.IPv4Network) -> list[ipaddress.IPv4Address]:
    if network.prefixlen >= 31:
        return list(network)
    return list(network.hosts())
