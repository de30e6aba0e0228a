"""Power actions: safe, retried, confirmed, and recorded with their events.

Every action on one BMC holds that BMC's lock (the poller skips a BMC while an action runs
on it), and goes the same way whatever the driver:

1. ``on`` with a boot override sets the boot device first;
2. it asks the BMC for the current state, and does nothing when the machine is already
   where it should be: **power on never cycles a machine that is on**;
3. each driver call retries :class:`~metalbus.power.drivers.TransientError` with doubling
   back-off (``action_retries``); a :class:`~metalbus.power.drivers.FatalError` fails at once;
4. it queries until the BMC confirms the new state (``confirm_timeout_s``, or
   ``soft_off_timeout_s`` for a soft power off);
5. the new state (and ``state.changed``), or the failure (``action.failed``), is committed
   with its event.

Errors the caller gets: ``conflict`` (the BMC refused for good: credentials, settings,
unsupported), ``service_unavailable`` (it did not answer, retries spent), ``timeout`` (it
took the order but never showed the new state).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from metalbus.shared import outbox
from metalbus.shared.contract.power import (
    BmcRecovered,
    BootOverride,
    PowerAction,
    PowerActionFailed,
    PowerResult,
    PowerState,
    PowerStateChanged,
)
from metalbus.shared.errors import (
    Conflict,
    MetalbusError,
    RequestTimeout,
    ServiceUnavailable,
)
from metalbus.shared.events import new_event, utcnow

from .drivers import FatalError, PowerDriver, TransientError
from .metrics import PowerMetrics
from .models import PowerBmc
from .settings import PowerSettings
from .store import BmcStore

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Run:
    """One action in progress: its driver and how many driver calls it made."""

    driver: PowerDriver  # type: ignore[type-arg]
    attempts: int = 0


class PowerController:
    """Carries out power actions; owns the per-BMC locks the poller respects."""

    def __init__(self, store: BmcStore, settings: PowerSettings, metrics: PowerMetrics) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def run(
        self,
        bmc_id: int,
        action: PowerAction,
        *,
        boot: BootOverride | None = None,
    ) -> PowerResult:
        """Carry out ``action`` on one BMC and return what the BMC confirmed.

        Raises:
            NotFound: no such BMC.
            Conflict: the BMC refused for good, or the driver cannot do this.
            ServiceUnavailable: the BMC did not answer (retries spent).
            RequestTimeout: the BMC never showed the new state.
        """
        async with self.store.db.read() as session:
            row = await self.store.get_row(session, bmc_id)
            machine_id = row.machine_id
            driver = self.store.driver_for(row)
        run = _Run(driver)
        try:
            async with self.locks[bmc_id]:
                before, after = await self._carry_out(run, action, boot)
        except MetalbusError as exc:
            self.metrics.actions(action.value, exc.code).inc()
            await self._record_failure(bmc_id, machine_id, action, exc, run.attempts)
            raise
        finally:
            await driver.close()
        self.metrics.actions(action.value, "ok").inc()
        await self._record_state(bmc_id, after, action)
        return PowerResult(
            bmc_id=bmc_id,
            action=action,
            power_state=after,
            changed=before is not after and after is not PowerState.UNKNOWN,
            attempts=run.attempts,
        )

    # -- the steps ------------------------------------------------------------------------

    async def _carry_out(
        self, run: _Run, action: PowerAction, boot: BootOverride | None
    ) -> tuple[PowerState, PowerState]:
        driver = run.driver
        kind = type(driver)
        if action is PowerAction.SOFT_OFF and not driver.can_soft_off():
            raise Conflict(f"the {kind.name.value} driver cannot power off softly", field="soft")
        if boot is not None:
            if not kind.boot_device:
                raise Conflict(
                    f"the {kind.name.value} driver cannot set the boot device", field="boot"
                )
            await self._call(
                run, lambda: driver.set_boot_device(boot.device, boot.persistent, boot.mode)
            )
        if not kind.can_query:
            # Manual: record the intent, know nothing.
            if action is PowerAction.ON:
                await self._call(run, driver.power_on)
            elif action in (PowerAction.OFF, PowerAction.SOFT_OFF):
                await self._call(run, lambda: driver.power_off(action is PowerAction.SOFT_OFF))
            elif action is PowerAction.CYCLE:
                await self._call(run, lambda: driver.power_off(False))
                await self._call(run, driver.power_on)
            return PowerState.UNKNOWN, PowerState.UNKNOWN
        before = await self._call(run, driver.query)
        if action in (PowerAction.QUERY, PowerAction.SET_BOOT_DEVICE):
            return before, before
        if action is PowerAction.ON:
            if before is not PowerState.ON:
                await self._call(run, driver.power_on)
                await self._confirm(run, PowerState.ON, self.settings.confirm_timeout_s)
            return before, PowerState.ON
        if action in (PowerAction.OFF, PowerAction.SOFT_OFF):
            soft = action is PowerAction.SOFT_OFF
            if before is not PowerState.OFF:
                await self._call(run, lambda: driver.power_off(soft))
                wait = self.settings.soft_off_timeout_s if soft else self.settings.confirm_timeout_s
                await self._confirm(run, PowerState.OFF, wait)
            return before, PowerState.OFF
        # Cycle: off (confirmed), then on (confirmed), the same for every driver.
        if before is not PowerState.OFF:
            await self._call(run, lambda: driver.power_off(False))
            await self._confirm(run, PowerState.OFF, self.settings.confirm_timeout_s)
        await self._call(run, driver.power_on)
        await self._confirm(run, PowerState.ON, self.settings.confirm_timeout_s)
        return before, PowerState.ON

    async def _call(self, run: _Run, step: Callable[[], Awaitable[T]]) -> T:
        """One driver call with retries of transient failures."""
        delay = self.settings.action_backoff_s
        for attempt in range(self.settings.action_retries + 1):
            run.attempts += 1
            try:
                return await asyncio.wait_for(step(), self.settings.query_timeout_s)
            except FatalError as exc:
                raise Conflict(exc.message, field=exc.field) from None
            except (TransientError, TimeoutError) as exc:
                message = exc.message if isinstance(exc, TransientError) else "no answer in time"
                if attempt == self.settings.action_retries:
                    raise ServiceUnavailable(
                        f"the BMC did not answer after {attempt + 1} tries: {message}"
                    ) from None
                log.info("BMC call failed (%s); retrying in %.1fs", message, delay)
                await asyncio.sleep(delay)  # deliberate back-off before retrying the BMC
                delay *= 2
        raise AssertionError("unreachable")

    async def _confirm(self, run: _Run, expected: PowerState, timeout: float) -> None:
        """Query until the BMC shows ``expected``; a passing query failure is tolerated."""
        deadline = time.monotonic() + timeout
        pause = 0.2
        last: PowerState | str = "no answer"
        while True:
            run.attempts += 1
            try:
                last = await asyncio.wait_for(run.driver.query(), self.settings.query_timeout_s)
            except FatalError as exc:
                raise Conflict(exc.message, field=exc.field) from None
            except (TransientError, TimeoutError):
                pass
            if last is expected:
                return
            if time.monotonic() + pause > deadline:
                raise RequestTimeout(
                    f"the BMC took the order but still shows {last} after {timeout:g}s "
                    f"(expected {expected})"
                )
            await asyncio.sleep(pause)  # deliberate: the BMC changes state in its own time
            pause = min(pause * 2, 2.0)

    # -- records --------------------------------------------------------------------------

    async def _record_state(self, bmc_id: int, state: PowerState, action: PowerAction) -> None:
        async with self.store.db.transaction() as session:
            row = await session.get(PowerBmc, bmc_id)
            if row is None:
                return  # deleted meanwhile: nothing to record
            now = utcnow()
            if state is not PowerState.UNKNOWN and row.power_state != state.value:
                outbox.stage(
                    session,
                    new_event(
                        PowerStateChanged(
                            bmc_id=bmc_id,
                            machine_id=row.machine_id,
                            previous=PowerState(row.power_state),
                            state=state,
                            cause="action",
                            action=action,
                        ),
                        subject=str(bmc_id),
                    ),
                )
                row.power_state = state.value
            if state is not PowerState.UNKNOWN:
                row.power_state_at = now
                if not row.reachable:
                    outbox.stage(
                        session,
                        new_event(
                            BmcRecovered(
                                bmc_id=bmc_id,
                                machine_id=row.machine_id,
                                failures=row.failures,
                                power_state=state,
                            ),
                            subject=str(bmc_id),
                        ),
                    )
                row.reachable = True
                row.failures = 0
            row.last_error = None
            row.updated_at = now
            session.add(row)

    async def _record_failure(
        self,
        bmc_id: int,
        machine_id: str | None,
        action: PowerAction,
        exc: MetalbusError,
        attempts: int,
    ) -> None:
        async with self.store.db.transaction() as session:
            row = await session.get(PowerBmc, bmc_id)
            if row is None:
                return
            row.last_error = exc.message[:500]
            row.updated_at = utcnow()
            session.add(row)
            outbox.stage(
                session,
                new_event(
                    PowerActionFailed(
                        bmc_id=bmc_id,
                        machine_id=machine_id,
                        action=action,
                        code=exc.code,
                        message=exc.message,
                        attempts=attempts,
                    ),
                    subject=str(bmc_id),
                ),
            )
