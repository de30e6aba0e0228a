"""The boot service as the runtime runs it: DHCPv4 (full or proxy) fed by ipam, TFTP and
HTTP boot.

Set-up reloads the leases from the database, opens the DHCP sockets (a missing interface
fails the start, loudly), and registers the loops: the ipam snapshot, the group-commit
writer, the expiry sweep, and the socket owner that closes them at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import uvicorn

from metalbus.shared.contract.boot import (
    BOOT_CONFIG_CLEAR,
    BOOT_CONFIG_GET,
    BOOT_CONFIG_SET,
    PxeUnknownMac,
)
from metalbus.shared.events import new_event
from metalbus.shared.runtime import (
    EmbeddedServer,
    ServiceDefinition,
    ServiceRuntime,
    run_service,
)

from .clients import BootClients
from .configs.provider import BootConfigs
from .configs.render import BootConfig
from .configs.store import ConfigStore
from .dhcp.engine import Engine, PxeSeen
from .dhcp.feed import NetworkFeed
from .dhcp.leases import LeaseTable
from .dhcp.network import Network
from .dhcp.server import DhcpMetrics, DhcpServer
from .dhcp.store import LeaseWriter, load_leases
from .http.app import boot_app
from .settings import BootSettings
from .tftp.events import TftpEvents
from .tftp.files import BootFiles
from .tftp.server import TftpMetrics, TftpServer
from .throttle import Throttle

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
log = logging.getLogger(__name__)


class Boot:
    """The boot service's parts."""

    def __init__(self, rt: ServiceRuntime, settings: BootSettings) -> None:
        self.rt = rt
        self.settings = settings
        self.network = Network()
        self.leases = LeaseTable()
        self.engine = Engine(settings, self.network, self.leases)
        metrics = DhcpMetrics(rt.metrics)
        self.writer = LeaseWriter(rt.db, metrics.batch_size.observe)
        self.feed = NetworkFeed(rt.bus, self.network)
        self.dhcp = DhcpServer(settings, self.engine, self.writer, metrics, self.pxe_seen)
        enlist = BootConfig(
            "enlist", settings.enlist_kernel, settings.enlist_initrd, settings.enlist_cmdline
        )
        self.config_store = ConfigStore(rt.db, enlist)
        self.configs = BootConfigs(enlist, self.config_store)
        self.files = BootFiles(settings.boot_resources_dir, self.configs.render_tftp)
        self.tftp_events = TftpEvents(
            rt.db,
            rt.metrics,
            BootClients(self.leases, self.configs),
            interval_s=settings.tftp_event_interval_s,
            per_s=settings.events_per_s,
        )
        self.tftp = TftpServer(
            str(settings.tftp_address or "127.0.0.1"),
            settings.tftp_port,
            self.files,
            TftpMetrics(rt.metrics),
            timeout_s=settings.tftp_timeout_s,
            max_retries=settings.tftp_max_retries,
            max_blksize=settings.tftp_max_blksize,
            max_windowsize=settings.tftp_max_windowsize,
            report=self.tftp_events.report,
        )
        self._unknown = Throttle(settings.unknown_mac_interval_s, settings.events_per_s)
        self._publishing: set[asyncio.Task[None]] = set()

    def pxe_seen(self, seen: PxeSeen) -> None:
        """Publish ``boot.pxe.unknown_mac``, at most once per MAC per interval (a PXE ROM
        repeats its DISCOVER several times a boot), and at most ``events_per_s`` in all."""
        if not self._unknown.allow(seen.mac, time.monotonic()):
            return
        payload = PxeUnknownMac(
            mac=seen.mac,
            arch=seen.arch,
            boot_method=seen.method,
            vlan_id=seen.subnet.vlan_id if seen.subnet else None,
            subnet_id=seen.subnet.id if seen.subnet else None,
            relay_ip=seen.relay_ip,
            client_uuid=seen.client_uuid,
            vendor_class=seen.vendor_class[:255] if seen.vendor_class else None,
        )
        task = asyncio.create_task(self._publish(payload))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, payload: PxeUnknownMac) -> None:
        # A fact about a packet, not a database change: published directly, and lost
        # (logged) if the bus is away; the client's next DISCOVER reports it again.
        try:
            await self.rt.bus.publish(new_event(payload, subject=payload.mac))
        except Exception as exc:
            self._unknown.forget(payload.mac)
            log.warning("pxe.unknown_mac for %s not published: %s", payload.mac, exc)

    async def serve_sockets(self) -> None:
        """Own the DHCP sockets for the life of the service (closed when cancelled)."""
        try:
            await asyncio.Event().wait()  # until cancelled at stop
        finally:
            await self.dhcp.stop()

    async def serve_tftp(self) -> None:
        """Own the TFTP socket for the life of the service (closed, transfers ended, when
        cancelled)."""
        try:
            await asyncio.Event().wait()  # until cancelled at stop
        finally:
            await self.tftp.stop()

    async def serve_http(self) -> None:
        """Serve HTTP boot for the life of the service (stopped when cancelled)."""
        settings = self.settings
        server = EmbeddedServer(
            uvicorn.Config(
                boot_app(settings.boot_resources_dir, self.configs, self.tftp_events.served),
                host=str(settings.http_boot_address),
                port=settings.http_boot_port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
        task = asyncio.create_task(server.serve())
        try:
            await asyncio.shield(task)
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def sweep(self) -> None:
        """End expired leases every ``lease_sweep_s`` (after a restart: those that ended
        while the service was down)."""
        while True:
            try:
                await self.dhcp.expire()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away: the next sweep tries again
                log.warning("lease expiry sweep failed: %s", exc)
            await asyncio.sleep(self.settings.lease_sweep_s)  # deliberate sweep interval


async def setup(rt: ServiceRuntime) -> None:
    """Reload leases, open the DHCP sockets and register the feed, writer and sweep."""
    settings = rt.settings
    assert isinstance(settings, BootSettings)
    boot = Boot(rt, settings)
    for lease in await load_leases(rt.db):
        boot.leases.put(lease)
    if settings.dhcp_interfaces:
        await boot.dhcp.start()
        rt.background(boot.serve_sockets)
    if settings.tftp_address is not None:
        await boot.tftp.start()
        rt.background(boot.serve_tftp)
    if settings.tftp_address is not None or settings.http_boot_address is not None:
        rt.background(boot.tftp_events.run)
    rt.command(BOOT_CONFIG_SET, boot.config_store.set)
    rt.command(BOOT_CONFIG_GET, boot.config_store.info)
    rt.command(BOOT_CONFIG_CLEAR, boot.config_store.clear)
    if settings.http_boot_address is not None:
        rt.background(boot.serve_http)
    rt.consumer("ipam", "dhcp", boot.feed.consumer())
    rt.background(boot.feed.load_until_done)
    rt.background(boot.writer.run)
    rt.background(boot.sweep)
    boot.dhcp.metrics.leases.set(len(boot.leases))


DEFINITION = ServiceDefinition(
    name="boot",
    description="PXE boot: DHCP, TFTP, HTTP boot, boot configs",
    settings_type=BootSettings,
    migrations=[MIGRATIONS],
    setup=setup,
)


def main() -> None:
    """Run the boot service until SIGTERM or SIGINT."""
    run_service(DEFINITION)
