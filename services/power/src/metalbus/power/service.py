"""The power service as the runtime runs it: BMC records, power actions, polling."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from metalbus.shared.commands import Empty
from metalbus.shared.contract import power as contract
from metalbus.shared.contract.power import (
    ById,
    DriverList,
    PowerAction,
    PowerOffRequest,
    PowerOnRequest,
    PowerResult,
    SetBootDeviceRequest,
)
from metalbus.shared.runtime import ServiceDefinition, ServiceRuntime, run_service
from metalbus.shared.secrets import SecretBox, load_keys

from .actions import PowerController
from .drivers import DRIVERS
from .metrics import PowerMetrics
from .poller import Poller
from .settings import PowerSettings
from .store import BmcStore

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
log = logging.getLogger(__name__)


@dataclass
class PowerService:
    """What the power service is made of once started (tests reach the poller through it)."""

    store: BmcStore
    controller: PowerController
    poller: Poller
    executor: ThreadPoolExecutor
    metrics: PowerMetrics

    async def power_on(self, req: PowerOnRequest) -> PowerResult:
        return await self.controller.run(req.id, PowerAction.ON, boot=req.boot)

    async def power_off(self, req: PowerOffRequest) -> PowerResult:
        action = PowerAction.SOFT_OFF if req.soft else PowerAction.OFF
        return await self.controller.run(req.id, action)

    async def power_cycle(self, req: ById) -> PowerResult:
        return await self.controller.run(req.id, PowerAction.CYCLE)

    async def power_query(self, req: ById) -> PowerResult:
        return await self.controller.run(req.id, PowerAction.QUERY)

    async def set_boot_device(self, req: SetBootDeviceRequest) -> PowerResult:
        return await self.controller.run(req.id, PowerAction.SET_BOOT_DEVICE, boot=req.boot)

    async def drivers(self, _: Empty) -> DriverList:
        return self.store.drivers()

    def session_idle_s(self) -> float:
        """How long a BMC session may sit unused before it is logged out: never less than
        two polling intervals (plus jitter), or every sweep would log in again."""
        s = self.controller.settings
        if not s.poll_enabled:
            return s.session_idle_s
        return max(s.session_idle_s, 2 * s.poll_interval_s + s.poll_jitter_s)

    async def release_idle_sessions(self) -> int:
        """Log out of every driver's sessions unused for :meth:`session_idle_s`."""
        idle = self.session_idle_s()
        released = 0
        for driver in DRIVERS.values():
            released += await driver.release_idle(self.executor, idle)
        self.metrics.sessions_released.inc(released)
        return released

    async def keep_sessions_tidy(self) -> None:
        """Release idle sessions every half idle period, until cancelled."""
        while True:
            await asyncio.sleep(self.session_idle_s() / 2)  # deliberate: the reaping period
            try:
                released = await self.release_idle_sessions()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("releasing idle BMC sessions failed")
            else:
                if released:
                    log.info("logged out of %d idle BMC session(s)", released)

    async def hold_executor(self) -> None:
        """Lives as long as the service; shuts the driver threads down at stop."""
        try:
            await asyncio.Event().wait()
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)


def make_definition(
    on_start: Callable[[PowerService], None] | None = None,
) -> ServiceDefinition:
    """The power service's definition; ``on_start`` sees its parts (for tests and benches)."""

    async def setup(rt: ServiceRuntime) -> None:
        settings = rt.settings
        assert isinstance(settings, PowerSettings)
        box = SecretBox(load_keys(settings, "power"))
        executor = ThreadPoolExecutor(settings.driver_threads, thread_name_prefix="power-driver")
        store = BmcStore(rt.db, box, executor)
        metrics = PowerMetrics(rt.metrics)
        controller = PowerController(store, settings, metrics)
        poller = Poller(store, controller, settings, metrics)
        service = PowerService(store, controller, poller, executor, metrics)
        rt.command(contract.BMC_CREATE, store.create)
        rt.command(contract.BMC_GET, store.get)
        rt.command(contract.BMC_LIST, store.list)
        rt.command(contract.BMC_UPDATE, store.update)
        rt.command(contract.BMC_DELETE, store.delete)
        rt.command(contract.DRIVER_LIST, service.drivers)
        rt.command(contract.POWER_ON, service.power_on)
        rt.command(contract.POWER_OFF, service.power_off)
        rt.command(contract.POWER_CYCLE, service.power_cycle)
        rt.command(contract.POWER_QUERY, service.power_query)
        rt.command(contract.SET_BOOT_DEVICE, service.set_boot_device)
        rt.background(service.hold_executor)
        rt.background(service.keep_sessions_tidy)
        if settings.poll_enabled:
            rt.background(service.poller.run)
        if on_start is not None:
            on_start(service)

    return ServiceDefinition(
        name="power",
        description="BMC power control and polling",
        settings_type=PowerSettings,
        migrations=[MIGRATIONS],
        setup=setup,
    )


DEFINITION = make_definition()


def main() -> None:
    """Run the power service until SIGTERM or SIGINT."""
    run_service(DEFINITION)
