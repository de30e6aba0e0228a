"""Active scans: a request to every address of an IPv4 subnet, ARP or ICMP echo.

A subnet inside a network configured on the interface is swept with ARP requests (every
request stays on that link); answers are sightings like any other (through the
interface's listener, or the scan's own socket when the interface is not listened on).
A subnet that is not attached is swept with ICMP echo requests when the host has a route
to the whole subnet other than the default route (no ARP crosses a router); each address
that answers is published as ``discovery.host.answered`` with the scan's completion.
Anything else is refused, as is a subnet of more than ``scan_max_addresses`` addresses: a
mistyped subnet never sweeps whatever lies behind the default gateway.

Every target is checked against the subnet again right before its request is sent: a scan
never asks for an address outside the subnet it was given. Requests are paced at
``scan_rate_pps``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from sqlmodel import col, select

from metalbus.shared.contract import ipam
from metalbus.shared.contract.discovery import (
    HostAnswered,
    Scan,
    ScanById,
    ScanCompleted,
    ScanMethod,
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
from .ping import Route, echo_reply_source, echo_request, open_icmp_socket, parse_routes
from .settings import DiscoverySettings

log = logging.getLogger(__name__)
Send = Callable[[ipaddress.IPv4Address, int], None]  # one request to a target (its index)
# A ping that cannot leave (no neighbour for the gateway, a route rejecting it) is a
# target that does not answer, not a failed scan.
_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.EACCES})


async def _ip(*argv: str) -> tuple[bytes, str | None]:
    """``ip -j -4 <argv>``: its output, and its error message when it failed."""
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "-j",
        "-4",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return out, (err.decode(errors="replace").strip() if proc.returncode != 0 else None)


async def routes() -> list[Route]:
    """The host's IPv4 routes of the main table, but the default route."""
    out, error = await _ip("route", "show", "table", "main")
    if error is not None:
        raise RuntimeError(f"ip route: {error}")
    return parse_routes(out)


async def interface_networks(name: str) -> list[ipaddress.IPv4Interface]:
    """The IPv4 addresses (with their networks) configured on ``name`` (``ip -j addr``)."""
    out, error = await _ip("addr", "show", "dev", name)
    if error is not None:
        raise ValidationFailed(f"no interface {name}: {error}", field="interface")
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

    async def _plan(
        self, network: ipaddress.IPv4Network, interface: str | None
    ) -> tuple[ScanMethod, str, ipaddress.IPv4Interface | None]:
        """How to sweep ``network``: ARP from an attached interface (with its own address),
        else ping through the most specific route holding the whole subnet."""
        names = [interface] if interface else list(self.settings.interfaces)
        for name in names:
            for address in await interface_networks(name):
                if network.subnet_of(address.network):
                    return ScanMethod.ARP, name, address
        holding = [
            r
            for r in await routes()
            if network.subnet_of(r.network) and (interface is None or r.dev == interface)
        ]
        if holding:
            route = max(holding, key=lambda r: r.network.prefixlen)
            return ScanMethod.PING, route.dev, None
        where = f"interface {interface}" if interface else "any interface of the service"
        raise ValidationFailed(
            f"{network} is not directly attached to {where}, nor reached through it by a "
            "route other than the default route",
            field="cidr",
        )

    async def start(self, request: ScanRequest) -> Scan:
        """Check the request, record the scan, and start it; returns it as started."""
        try:
            network = ipaddress.ip_network(request.cidr, strict=True)
        except ValueError as exc:
            message = f"{request.cidr!r} is not a subnet: {exc}"
            raise ValidationFailed(message, field="cidr") from exc
        if not isinstance(network, ipaddress.IPv4Network):
            raise ValidationFailed("scans are IPv4 only", field="cidr")
        if network.num_addresses > self.settings.scan_max_addresses:
            raise ValidationFailed(
                f"{network} has {network.num_addresses} addresses; at most "
                f"{self.settings.scan_max_addresses} may be scanned at once",
                field="cidr",
            )
        method, name, own = await self._plan(network, request.interface)
        targets = [a for a in _addresses(network) if own is None or a != own.ip]
        now = utcnow()
        async with self.db.transaction() as session:
            row = ScanRow(
                cidr=str(network),
                interface=name,
                method=method.value,
                state=ScanState.RUNNING.value,
                probes=len(targets),
                started_at=now,
            )
            session.add(row)
            await session.flush()
        scan = scan_public(row)
        self.running[scan.id] = scan
        answered: dict[str, datetime] = {}  # address -> its first answer
        if own is None:
            prepare = functools.partial(self._ping_sweep, scan, network, answered)
        else:
            prepare = functools.partial(self._arp_sweep, scan, network, own, answered)
        task = asyncio.create_task(self._run(scan, network, targets, prepare, answered))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return scan

    async def _run(
        self,
        scan: Scan,
        network: ipaddress.IPv4Network,
        targets: list[ipaddress.IPv4Address],
        prepare: Callable[[contextlib.ExitStack], Send],
        answered: dict[str, datetime],
    ) -> None:
        """Send, wait for late answers, record the scan; the sockets close in any case."""
        error: str | None = None
        with contextlib.ExitStack() as resources:
            try:
                await self._paced(scan, network, targets, prepare(resources))
                await asyncio.sleep(self.settings.scan_reply_wait_s)  # late answers still count
            except asyncio.CancelledError:
                error = "stopped with the service"
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("scan %s of %s failed: %s", scan.id, scan.cidr, error)
            finally:
                resources.close()
                latest = self.running.pop(scan.id, scan)  # with its progress
                hosts = []
                if scan.method is ScanMethod.PING:  # ARP answers were neighbours already
                    hosts = [
                        HostAnswered(ip=ip, interface=scan.interface, scan_id=scan.id, seen_at=t)
                        for ip, t in sorted(
                            answered.items(), key=lambda a: ipaddress.IPv4Address(a[0])
                        )
                    ]
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._finish(latest, len(answered), error, hosts))

    def _arp_sweep(
        self,
        scan: Scan,
        network: ipaddress.IPv4Network,
        own: ipaddress.IPv4Interface,
        answered: dict[str, datetime],
        resources: contextlib.ExitStack,
    ) -> Send:
        """Open what an ARP sweep needs (closed by ``resources``); returns its sender."""

        def seen(interface: str, sighting: Sighting) -> None:
            if interface == scan.interface and sighting.vid is None:
                with contextlib.suppress(ValueError):
                    if ipaddress.IPv4Address(sighting.ip) in network:
                        answered.setdefault(sighting.ip, utcnow())

        resources.callback(self.add_listener(seen))
        if scan.interface not in self.listeners:
            # Nobody listens on this interface: the scan reads its own answers.
            own_listener = Listener(scan.interface, self.observe, self.metrics)  # ARP only
            own_listener.start()
            resources.callback(own_listener.stop)
        sock = open_packet_socket(scan.interface, ETH_P_ARP)
        resources.callback(sock.close)
        mac = interface_mac(scan.interface)

        def send(target: ipaddress.IPv4Address, _: int) -> None:
            sock.send(arp_request(mac, own.ip, target))

        return send

    def _ping_sweep(
        self,
        scan: Scan,
        network: ipaddress.IPv4Network,
        answered: dict[str, datetime],
        resources: contextlib.ExitStack,
    ) -> Send:
        """Open what a ping sweep needs (closed by ``resources``); returns its sender."""
        identifier = random.randrange(1, 0x10000)  # tells this scan's replies from others'
        loop = asyncio.get_running_loop()
        sock = open_icmp_socket(scan.interface)
        resources.callback(sock.close)

        def readable() -> None:
            for _ in range(512):  # a burst, then the loop's other work
                try:
                    packet = sock.recv(2048)
                except (BlockingIOError, InterruptedError):
                    return
                source = echo_reply_source(packet, identifier)
                if source is not None and source in network:
                    answered.setdefault(str(source), utcnow())

        loop.add_reader(sock.fileno(), readable)
        resources.callback(loop.remove_reader, sock.fileno())

        def send(target: ipaddress.IPv4Address, index: int) -> None:
            try:
                sock.sendto(echo_request(identifier, index & 0xFFFF), (str(target), 0))
            except OSError as exc:
                if exc.errno not in _UNREACHABLE:
                    raise

        return send

    async def _paced(
        self,
        scan: Scan,
        network: ipaddress.IPv4Network,
        targets: list[ipaddress.IPv4Address],
        send: Send,
    ) -> None:
        """Send one request per target at ``scan_rate_pps``, each checked against the subnet."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.settings.scan_rate_pps
        due = loop.time()
        for index, target in enumerate(targets):
            if target not in network:  # never: the targets come from the network itself
                raise RuntimeError(f"refusing to probe {target} outside {network}")
            while True:
                try:
                    send(target, index)
                    break
                except BlockingIOError:
                    await asyncio.sleep(interval)  # the device queue is full: let it drain
            self.running[scan.id] = scan = scan.model_copy(update={"sent": scan.sent + 1})
            due += interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # deliberate pacing: scan_rate_pps

    async def _finish(
        self, scan: Scan, answered: int, error: str | None, hosts: Sequence[HostAnswered] = ()
    ) -> None:
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
            # A ping scan's answers go out with its completion, in the same transaction.
            for host in hosts:
                stage(session, new_event(host, subject=host.ip))
            done = ScanCompleted(scan=scan_public(row))
            stage(session, new_event(done, subject=f"scan/{row.id}"))

    async def scheduled(self, subnets: Callable[[], Awaitable[list[ipam.Subnet]]]) -> None:
        """Scan ipam's ``active_discovery`` subnets every ``active_scan_interval_s``.

        Only IPv4 subnets of at most ``scan_max_addresses`` addresses that are attached to
        an interface the service listens on (ARP) or reached by a route other than the
        default (ping) are scanned; one already being scanned is skipped.
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
            except ValidationFailed as exc:  # too large, or not reachable from here
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
