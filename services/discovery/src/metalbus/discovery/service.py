"""The discovery service as the runtime runs it: listeners, the neighbour writer, scans.

Set-up loads the MAC vendors and the stored neighbours, opens a raw packet socket on every
configured interface (a missing interface, or no right to raw sockets, fails the start
loudly), and registers the commands and loops: the batch writer, and the owner of the
sockets and scans that closes them at stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from metalbus.shared import subjects
from metalbus.shared.contract import discovery as contract
from metalbus.shared.contract import ipam
from metalbus.shared.errors import ValidationFailed
from metalbus.shared.runtime import ServiceDefinition, ServiceRuntime, run_service

from . import oui
from .capture import CaptureMetrics, Listener
from .dhcp import DhcpProber
from .discoveries import Discoveries, ipam_subnets
from .frames import Sighting
from .inventory import inventory_consumer
from .leases import lease_consumer
from .neighbours import NeighbourTable
from .scan import Scanner
from .settings import DiscoverySettings

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
log = logging.getLogger(__name__)


class Discovery:
    """The discovery service's parts."""

    def __init__(
        self, rt: ServiceRuntime, settings: DiscoverySettings, vendors: oui.VendorTable
    ) -> None:
        self.rt = rt
        self.settings = settings
        self.metrics = CaptureMetrics(rt.metrics)
        self.table = NeighbourTable(
            rt.db,
            settings.instance_id,
            refresh_interval_s=settings.refresh_interval_s,
            flush_interval_s=settings.flush_interval_s,
            flush_batch=settings.flush_batch,
            on_event=lambda name: self.metrics.events(name).inc(),
        )
        self.listeners = {
            name: Listener(name, self.table.observe, self.metrics, self.table.observe_name)
            for name in settings.interfaces
        }
        self.scanner = Scanner(
            rt.db, settings, self.listeners, self.table.observe, self.add_listener, self.metrics
        )
        self.discoveries = Discoveries(rt.db, rt.bus, vendors)
        self.dhcp = DhcpProber(settings, rt.bus, self.table)

    def add_listener(self, listener: Callable[[str, Sighting], None]) -> Callable[[], None]:
        """Call ``listener`` with every sighting until the returned function is called."""
        self.table.listeners.append(listener)
        return lambda: self.table.listeners.remove(listener)

    def start_listening(self) -> None:
        """Open every interface's socket (all or none)."""
        try:
            for listener in self.listeners.values():
                listener.start()
        except OSError:
            self.stop_listening()
            raise

    def stop_listening(self) -> None:
        """Close every interface's socket."""
        for listener in self.listeners.values():
            listener.stop()

    async def own_sockets(self) -> None:
        """Hold the sockets and scans for the life of the service (closed when cancelled)."""
        try:
            await asyncio.Event().wait()  # until cancelled at stop
        finally:
            self.stop_listening()
            await self.scanner.stop()

    async def ipam_subnets(self) -> list[ipam.Subnet]:
        """Every subnet ipam has."""
        return [view.subnet for view in await ipam_subnets(self.rt.bus)]

    async def clear(self, request: contract.ClearRequest) -> contract.ClearResult:
        """``discovery_clear``: by MAC and/or IP, or all (which must be asked for)."""
        if request.mac is None and request.ip is None and not request.all:
            raise ValidationFailed("name a mac and/or an ip, or ask for all", field="all")
        cleared = await self.table.clear(request.mac, request.ip)
        return contract.ClearResult(cleared=cleared)


async def setup(rt: ServiceRuntime) -> None:
    """Load vendors and neighbours, open the listeners, register commands and loops."""
    settings = rt.settings
    assert isinstance(settings, DiscoverySettings)
    vendors = await asyncio.to_thread(oui.load, settings.oui_files)
    service = Discovery(rt, settings, vendors)
    loaded = await service.table.load()
    log.info("discovery: %d neighbours, %d MAC vendor prefixes", loaded, len(vendors))
    service.start_listening()
    rt.background(service.own_sockets)
    rt.background(service.table.run)
    if settings.active_scan_interval_s > 0 and settings.interfaces:

        async def scheduled_scans() -> None:
            await service.scanner.scheduled(service.ipam_subnets)

        rt.background(scheduled_scans)
    if settings.dhcp_probe_interval_s > 0 and settings.interfaces:
        rt.background(service.dhcp.scheduled)
    rt.consumer(
        "boot",
        "leases",
        lease_consumer(service.table),
        filter_subject=subjects.entity_events("boot", "lease"),
    )
    rt.consumer("api", "inventory", inventory_consumer())
    rt.command(contract.DHCP_PROBE, service.dhcp.probe)
    rt.command(contract.DISCOVERY_LIST, service.discoveries.list)
    rt.command(contract.DISCOVERY_CLEAR, service.clear)
    rt.command(contract.DISCOVERY_MAKE_KNOWN, service.discoveries.make_known)
    rt.command(contract.SCAN_START, service.scanner.start)
    rt.command(contract.SCAN_GET, service.scanner.get)
    rt.command(contract.SCAN_LIST, service.scanner.list)


DEFINITION = ServiceDefinition(
    name="discovery",
    description="network discovery: ARP, NDP, mDNS, active ARP scans, rogue DHCP",
    settings_type=DiscoverySettings,
    migrations=[MIGRATIONS],
    setup=setup,
)


def main() -> None:
    """Run the discovery service until SIGTERM or SIGINT."""
    run_service(DEFINITION)
