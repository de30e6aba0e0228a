"""Periodic power polling: every BMC with ``poll`` set, every ``poll_interval_s``.

A sweep queries BMCs concurrently, bounded twice: at most ``poll_concurrency`` queries at
once overall and at most ``poll_per_host`` per BMC host (a chassis manager fronting many
blades must not be flooded). Each query starts after a random delay of up to
``poll_jitter_s``, so BMCs are not all hit in the same instant, sweep after sweep.

A circuit breaker keeps a sweep from spending its time on BMCs that stopped answering:
after ``breaker_threshold`` failed queries in a row the BMC is marked unreachable
(``bmc.unreachable``) and then only probed after a pause that doubles each failure (from
one interval up to ``breaker_max_backoff_s``). The first query that works again publishes
``bmc.recovered``.

Results are committed once per sweep, and only for BMCs with something new (a different
state, a failure, a recovery): a sweep of 1000 BMCs with nothing new writes nothing. A
result is dropped when a power action recorded a state for that BMC after the sweep read it
(the action's state is fresher).

Polling runs in every replica with ``poll_enabled``; with several replicas on one database,
enable it on one (the others still serve actions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared import outbox
from metalbus.shared.contract.power import (
    BmcRecovered,
    BmcUnreachable,
    PowerState,
    PowerStateChanged,
)
from metalbus.shared.errors import MetalbusError
from metalbus.shared.events import new_event, utcnow

from .actions import PowerController
from .drivers import DRIVERS, DriverError, PowerDriver
from .metrics import PowerMetrics
from .models import PowerBmc
from .settings import PowerSettings
from .store import BmcStore

log = logging.getLogger(__name__)


@dataclass
class _Target:
    bmc_id: int
    host: str | None
    known_at: datetime | None
    driver: PowerDriver | None = None  # type: ignore[type-arg]
    state: PowerState | None = None
    error: str | None = None


@dataclass
class SweepReport:
    """What one sweep did."""

    bmcs: int = 0
    queried: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    changed: int = 0
    unreachable: int = 0
    recovered: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


class Poller:
    """Sweeps the BMCs and reports what changed."""

    def __init__(
        self,
        store: BmcStore,
        controller: PowerController,
        settings: PowerSettings,
        metrics: PowerMetrics,
    ) -> None:
        self.store = store
        self.controller = controller
        self.settings = settings
        self.metrics = metrics
        self.breakers: defaultdict[int, _Breaker] = defaultdict(_Breaker)
        self.last: SweepReport | None = None

    async def run(self) -> None:
        """Sweep every ``poll_interval_s`` until cancelled."""
        while True:
            started = time.monotonic()
            try:
                self.last = await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("power polling sweep failed")
            pause = self.settings.poll_interval_s - (time.monotonic() - started)
            await asyncio.sleep(max(pause, 0.0))  # deliberate: the polling interval

    async def sweep(self) -> SweepReport:
        """Query every due BMC once and commit what is new."""
        started = time.monotonic()
        report = SweepReport()
        async with self.store.db.read() as session:
            rows = (
                await session.exec(
                    select(PowerBmc).where(col(PowerBmc.poll)).order_by(col(PowerBmc.id))
                )
            ).all()
        report.bmcs = len(rows)
        now = time.monotonic()
        targets: list[_Target] = []
        for row in rows:
            assert row.id is not None
            if not DRIVERS[row.driver].can_query:  # type: ignore[index]
                continue
            breaker = self.breakers[row.id]
            if breaker.open_until > now or self.controller.locks[row.id].locked():
                report.skipped += 1
                continue
            target = _Target(row.id, row.host, row.power_state_at)
            try:
                target.driver = self.store.driver_for(row)
            except MetalbusError as exc:
                target.error = exc.message
            targets.append(target)
        overall = asyncio.Semaphore(self.settings.poll_concurrency)
        per_host: defaultdict[str | None, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.settings.poll_per_host)
        )
        await asyncio.gather(*(self._query(t, overall, per_host[t.host]) for t in targets))
        report.queried = len(targets)
        await self._commit(targets, report)
        report.seconds = time.monotonic() - started
        self.metrics.sweep_seconds.observe(report.seconds)
        self.metrics.queries("ok").inc(report.ok)
        self.metrics.queries("failed").inc(report.failed)
        self.metrics.queries("skipped").inc(report.skipped)
        self.metrics.state_changes.inc(report.changed)
        return report

    async def _query(
        self, target: _Target, overall: asyncio.Semaphore, host: asyncio.Semaphore
    ) -> None:
        if target.driver is None:
            return
        jitter = random.uniform(0, self.settings.poll_jitter_s)
        if jitter:
            await asyncio.sleep(jitter)  # deliberate: spread the queries over the jitter window
        try:
            async with host, overall:
                target.state = await asyncio.wait_for(
                    target.driver.query(), self.settings.query_timeout_s
                )
        except DriverError as exc:
            target.error = exc.message
        except TimeoutError:
            target.error = f"no answer within {self.settings.query_timeout_s:g}s"
        finally:
            with contextlib.suppress(Exception):
                await target.driver.close()

    async def _commit(self, targets: list[_Target], report: SweepReport) -> None:
        now = time.monotonic()
        news: list[_Target] = []
        for t in targets:
            breaker = self.breakers[t.bmc_id]
            if t.state is not None:
                report.ok += 1
                if breaker.failures:
                    news.append(t)
                breaker.failures, breaker.open_until = 0, 0.0
            else:
                report.failed += 1
                if len(report.errors) < 10:
                    report.errors.append(f"BMC {t.bmc_id}: {t.error}")
                breaker.failures += 1
                news.append(t)
                over = breaker.failures - self.settings.breaker_threshold
                if over >= 0:
                    pause = min(
                        self.settings.poll_interval_s * 2**over,
                        self.settings.breaker_max_backoff_s,
                    )
                    breaker.open_until = now + pause
        states = {t.bmc_id: t for t in targets if t.state is not None}
        if not news and not states:
            return
        async with self.store.db.transaction() as session:
            ids = list({t.bmc_id for t in news} | set(states))
            rows = (await session.exec(select(PowerBmc).where(col(PowerBmc.id).in_(ids)))).all()
            for row in rows:
                assert row.id is not None
                t = states.get(row.id) or next(x for x in news if x.bmc_id == row.id)
                if row.power_state_at != t.known_at and t.state is not None:
                    continue  # an action recorded a fresher state meanwhile
                if self._apply(session, row, t, report):
                    row.updated_at = utcnow()
                    session.add(row)

    def _apply(self, session: AsyncSession, row: PowerBmc, t: _Target, report: SweepReport) -> bool:
        """Fold one result into its row and stage its events; True when the row changed."""
        assert row.id is not None
        subject = str(row.id)
        if t.state is None:
            row.failures += 1
            row.last_error = (t.error or "query failed")[:500]
            if row.reachable and row.failures >= self.settings.breaker_threshold:
                row.reachable = False
                report.unreachable += 1
                outbox.stage(
                    session,
                    new_event(
                        BmcUnreachable(
                            bmc_id=row.id,
                            machine_id=row.machine_id,
                            failures=row.failures,
                            message=row.last_error,
                        ),
                        subject=subject,
                    ),
                )
            return True
        changed = False
        if row.failures or not row.reachable or row.last_error:
            if not row.reachable:
                report.recovered += 1
                outbox.stage(
                    session,
                    new_event(
                        BmcRecovered(
                            bmc_id=row.id,
                            machine_id=row.machine_id,
                            failures=row.failures,
                            power_state=t.state,
                        ),
                        subject=subject,
                    ),
                )
            row.reachable, row.failures, row.last_error = True, 0, None
            changed = True
        if row.power_state != t.state.value:
            report.changed += 1
            outbox.stage(
                session,
                new_event(
                    PowerStateChanged(
                        bmc_id=row.id,
                        machine_id=row.machine_id,
                        previous=PowerState(row.power_state),
                        state=t.state,
                        cause="poll",
                    ),
                    subject=subject,
                ),
            )
            row.power_state = t.state.value
            row.power_state_at = utcnow()
            changed = True
        return changed
