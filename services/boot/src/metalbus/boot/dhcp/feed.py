"""How DHCP learns what to serve from ipam: the ``dhcp_config`` snapshot, then ipam's events.

The snapshot is taken once at start (retried until ipam answers); ipam's events then keep
the :class:`~metalbus.boot.dhcp.network.Network` current through the durable consumer
``boot-dhcp``. Events wait for the snapshot, so an event never lands under an older
snapshot. When a VLAN starts being served, its subnets may never have passed by as events
here (they are older than the stream), so a fresh snapshot is taken.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.bus import Bus
from metalbus.shared.commands import Empty
from metalbus.shared.contract import ipam
from metalbus.shared.errors import MetalbusError, ServiceUnavailable, ValidationFailed
from metalbus.shared.events import EVENT_TYPES, RawEvent

from .network import Network

log = logging.getLogger(__name__)

SNAPSHOT_WAIT_S = 10.0


class NetworkFeed:
    """Keeps ``network`` in step with ipam."""

    def __init__(self, bus: Bus, network: Network) -> None:
        self.bus = bus
        self.network = network
        self.loaded = asyncio.Event()

    async def refresh(self) -> None:
        """Take ipam's ``dhcp_config`` snapshot now.

        Raises:
            MetalbusError: ipam did not answer (``service_unavailable``, ``timeout``).
        """
        config = await self.bus.request(ipam.DHCP_CONFIG, Empty())
        self.network.load(config)
        self.loaded.set()
        log.info("DHCP configuration loaded: %d VLANs", len(config.vlans))

    async def load_until_done(self) -> None:
        """Retry the first snapshot with back-off until ipam answers (a background loop)."""
        pause = 0.2
        while not self.loaded.is_set():
            try:
                await self.refresh()
                return
            except MetalbusError as exc:
                log.info("ipam has not given the DHCP configuration yet (%s)", exc.code)
            await asyncio.sleep(pause)  # back-off while ipam is away
            pause = min(pause * 2, 5.0)

    def consumer(self) -> Callable[[AsyncSession, RawEvent], Awaitable[None]]:
        """The apply function of the durable consumer of ipam's events."""

        async def apply(_: AsyncSession, event: RawEvent) -> None:
            model = EVENT_TYPES.get(event.type)
            if model is None:
                return
            try:
                payload = model.model_validate(event.data)
            except ValidationError as exc:
                raise ValidationFailed(f"event {event.id} has a bad payload") from exc
            try:
                await asyncio.wait_for(self.loaded.wait(), SNAPSHOT_WAIT_S)
            except TimeoutError:
                raise ServiceUnavailable("the DHCP configuration is not loaded yet") from None
            if self.network.apply(payload):
                await self.refresh()

        return apply
