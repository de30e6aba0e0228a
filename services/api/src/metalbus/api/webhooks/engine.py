"""The delivery engine: every service's events in, signed HTTP POSTs out.

Two halves, joined by the delivery table:

- Durable consumers (one per service stream, shared by the api replicas) turn each event
  into one pending delivery per subscription that wants it, in the transaction that marks
  the event processed: an event is never lost between the stream and the table, and never
  recorded twice.
- A sender loop on every replica claims due deliveries with a lease (a conditional UPDATE,
  so two replicas never send the same attempt), POSTs them concurrently, and records each
  attempt. A failed attempt is retried with exponential back-off and jitter until the
  delivery runs out of attempts or age, then it is marked failed.

Delivery is at least once: a replica that dies after the receiver answered but before the
answer was recorded leaves a lease that runs out, and the attempt is made again. Receivers
de-duplicate on the ``Metalbus-Event-Id`` header (docs/webhooks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
from prometheus_client import Counter, Histogram
from sqlalchemy import Connection, delete, event, insert, or_, select, update
from sqlalchemy.engine import make_url
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared import __version__, subjects
from metalbus.shared.errors import MetalbusError
from metalbus.shared.events import RawEvent, as_utc, utcnow
from metalbus.shared.runtime import ServiceRuntime
from metalbus.shared.secrets import SecretBox, load_keys
from metalbus.shared.tasks import cancel_all

from ..settings import ApiSettings
from . import signing, store
from .models import DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery, url_origin

log = logging.getLogger(__name__)

_D = WebhookDelivery.__table__  # type: ignore[attr-defined]
_W = Webhook.__table__  # type: ignore[attr-defined]
_A = WebhookAttempt.__table__  # type: ignore[attr-defined]


def load_box(settings: ApiSettings) -> SecretBox | None:
    """The key that seals signing secrets, or None when none is configured on a shared
    database (webhooks then refuse to be written; the rest of the api runs).

    Raises:
        ValueError: a configured key is malformed.
    """
    url = make_url(settings.database_url)
    embedded = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if settings.secret_key is None and settings.secret_key_file is None and not embedded:
        log.warning("no METALBUS_API_SECRET_KEY: webhooks cannot be created until one is set")
        return None
    return SecretBox(load_keys(settings, "api"))


@dataclass(frozen=True)
class _Claim:
    """A delivery this replica holds the lease of, with what it needs to send it."""

    id: int
    webhook_id: str
    url: str
    sealed_secret: str
    body: str
    event_id: str
    event_type: str
    attempts: int
    attempt_limit: int
    expires_at: datetime


@dataclass(frozen=True)
class _Outcome:
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    retry_after: float | None

    @property
    def ok(self) -> bool:
        return self.error is None


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds before the next try after ``attempt`` failures: doubling from ``base`` up to
    ``cap``, then drawn from its upper half so that retries of many deliveries spread out."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return random.uniform(delay / 2, delay)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


class WebhookEngine:
    """Records deliveries from the event streams and sends them."""

    def __init__(self, runtime: ServiceRuntime, settings: ApiSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        # Loaded here, so a malformed key stops the api before anything starts.
        self.box = load_box(settings)
        self._wake = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], _Claim] = {}
        self._loop: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        # Unique per engine: a lease this one holds is told apart from one an earlier engine
        # of the same process (same instance id) left behind.
        self.holder = f"{settings.instance_id}/{secrets.token_hex(4)}"
        registry = runtime.metrics.registry
        self._attempts = Counter(
            "metalbus_webhook_attempts",
            "Webhook delivery attempts",
            ["outcome"],
            registry=registry,
        ).labels
        self._seconds = Histogram(
            "metalbus_webhook_attempt_duration_seconds",
            "Time a receiver took to answer a webhook delivery",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )

    # -- in: events to deliveries --------------------------------------------------------

    def register(self) -> None:
        """One durable consumer per service stream (call before the runtime starts)."""
        for service in subjects.SERVICES:
            self.runtime.consumer(service, f"webhooks-{service}", self.record)

    async def record(self, session: AsyncSession, raw: RawEvent) -> None:
        """Add the deliveries of one event (inside the idempotent consumer's transaction)."""
        added = await store.add_deliveries(
            session,
            raw,
            attempt_limit=self.settings.webhook_max_attempts,
            max_age=timedelta(seconds=self.settings.webhook_max_age_s),
        )
        if added:
            # Wake the sender once the rows are visible, not before (it would find nothing
            # and wait for its next poll).
            event.listen(session.sync_session, "after_commit", self._on_commit, once=True)

    def _on_commit(self, _session: Any) -> None:
        self._wake.set()

    def wake(self) -> None:
        """Look for due deliveries now (after a redelivery was asked for)."""
        self._wake.set()

    # -- out: deliveries to receivers ------------------------------------------------------

    async def start(self) -> None:
        """Start sending (after the runtime started)."""
        s = self.settings
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(s.webhook_timeout_s, connect=min(5.0, s.webhook_timeout_s)),
            follow_redirects=False,  # a redirect is a failed attempt: fix the URL instead
            limits=httpx.Limits(max_connections=s.webhook_concurrency),
            headers={"User-Agent": f"metalbus-webhooks/{__version__}"},
            trust_env=False,
        )
        self._loop = asyncio.create_task(self._run(), name="webhook sender")
        self._sweeper = asyncio.create_task(self._sweep(), name="webhook log sweeper")

    @property
    def running(self) -> bool:
        """Whether the sender takes new work (false from the moment it starts stopping)."""
        return self._loop is not None and not self._loop.done()

    async def stop(self) -> None:
        """Stop claiming, let attempts in flight finish (up to the timeout), release the rest."""
        if self._loop is None:
            return
        await cancel_all([t for t in (self._loop, self._sweeper) if t is not None])
        left = dict(self._inflight)
        if left:
            _, pending = await asyncio.wait(left, timeout=self.settings.webhook_timeout_s)
            await cancel_all(pending)
            unfinished = [left[t].id for t in pending]
            if unfinished:
                with contextlib.suppress(Exception):
                    await self.runtime.db.run_transaction(
                        lambda c: c.execute(
                            update(_D)
                            .where(_D.c.id.in_(unfinished), _D.c.leased_by == self.holder)
                            .values(leased_until=None, leased_by=None)
                        )
                    )
        if self._client is not None:
            await self._client.aclose()
        self._loop = None

    async def _run(self) -> None:
        poll = self.settings.webhook_poll_s
        while True:
            self._wake.clear()
            free = self.settings.webhook_concurrency - len(self._inflight)
            if free > 0:
                try:
                    claims = await self._claim(free)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # database away: try again at the next poll
                    log.warning("cannot claim webhook deliveries: %s", type(exc).__name__)
                    claims = []
                for claim in claims:
                    task = asyncio.create_task(self._send(claim), name=f"webhook {claim.id}")
                    self._inflight[task] = claim
                    task.add_done_callback(self._finished)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=poll)

    async def _sweep(self) -> None:
        """Forget finished deliveries (and their attempts) older than ``webhook_keep_days``.

        Every replica sweeps; a delete is the same done twice.
        """
        keep = timedelta(days=self.settings.webhook_keep_days)
        interval = min(3600.0, keep.total_seconds() / 10)
        while True:
            old = delete(_D).where(
                _D.c.status != DeliveryStatus.PENDING.value, _D.c.completed_at < utcnow() - keep
            )
            try:
                await self.runtime.db.run_transaction(partial(Connection.execute, statement=old))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database away: the next round does it
                log.warning("cannot sweep old webhook deliveries: %s", type(exc).__name__)
            await asyncio.sleep(interval)  # deliberate interval: housekeeping

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook attempt failed unexpectedly", exc_info=task.exception())

    async def _claim(self, slots: int) -> list[_Claim]:
        busy: dict[str, int] = {}
        for claim in self._inflight.values():
            busy[claim.webhook_id] = busy.get(claim.webhook_id, 0) + 1
        now = utcnow()
        lease = now + timedelta(seconds=2 * self.settings.webhook_timeout_s + 10)
        return await self.runtime.db.run_transaction(
            lambda c: self._claim_on(c, slots, busy, now, lease)
        )

    def _claim_on(
        self,
        connection: Connection,
        slots: int,
        busy: dict[str, int],
        now: datetime,
        lease: datetime,
    ) -> list[_Claim]:
        """Take up to ``slots`` due deliveries, at most ``webhook_per_subscription`` in
        flight per subscription, so a slow receiver holds its own share and no more."""
        per_hook = self.settings.webhook_per_subscription
        claimed: list[_Claim] = []
        while len(claimed) < slots:
            full = [hook for hook, n in busy.items() if n >= per_hook]
            query = (
                select(_D, _W.c.url, _W.c.secret)
                .join(_W, _W.c.id == _D.c.webhook_id)
                .where(
                    _D.c.status == DeliveryStatus.PENDING.value,
                    _D.c.next_attempt_at <= now,
                    or_(_D.c.leased_until.is_(None), _D.c.leased_until < now),
                    _W.c.active.is_(True),
                )
                .order_by(_D.c.next_attempt_at)
                .limit(2 * (slots - len(claimed)))
            )
            if full:
                query = query.where(_D.c.webhook_id.not_in(full))
            rows = connection.execute(query).all()
            before = len(claimed)
            for row in rows:
                if len(claimed) >= slots or busy.get(row.webhook_id, 0) >= per_hook:
                    continue
                taken = connection.execute(
                    update(_D)
                    .where(
                        _D.c.id == row.id,
                        _D.c.status == DeliveryStatus.PENDING.value,
                        or_(_D.c.leased_until.is_(None), _D.c.leased_until < now),
                    )
                    .values(leased_until=lease, leased_by=self.holder)
                )
                if taken.rowcount != 1:
                    continue  # another replica got there first
                busy[row.webhook_id] = busy.get(row.webhook_id, 0) + 1
                claimed.append(
                    _Claim(
                        id=row.id,
                        webhook_id=row.webhook_id,
                        url=row.url,
                        sealed_secret=row.secret,
                        body=row.body,
                        event_id=row.event_id,
                        event_type=row.event_type,
                        attempts=row.attempts,
                        attempt_limit=row.attempt_limit,
                        expires_at=row.expires_at,
                    )
                )
            if len(claimed) == before:
                break  # nothing due, or all of it taken by others meanwhile
        return claimed

    async def _send(self, claim: _Claim) -> None:
        outcome = await self._post(claim)
        self._attempts("ok" if outcome.ok else "failed").inc()
        self._seconds.observe(outcome.duration_ms / 1000)
        finished = await self.runtime.db.run_transaction(
            lambda c: self._record_attempt(c, claim, outcome)
        )
        if not outcome.ok:
            log.info(
                "webhook %s: delivery %s of event %s to %s failed (attempt %d): %s%s",
                claim.webhook_id,
                claim.id,
                claim.event_id,
                url_origin(claim.url),
                claim.attempts + 1,
                outcome.error,
                "; giving up" if finished == DeliveryStatus.FAILED else "",
            )

    async def _post(self, claim: _Claim) -> _Outcome:
        assert self._client is not None
        started_at = utcnow()
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            secret = store.need_box(self.box).open(claim.sealed_secret)["secret"]
            body = claim.body.encode()
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/cloudevents+json; charset=utf-8",
                signing.EVENT_ID_HEADER: claim.event_id,
                signing.EVENT_TYPE_HEADER: claim.event_type,
                signing.DELIVERY_HEADER: str(claim.id),
                signing.TIMESTAMP_HEADER: str(timestamp),
                signing.SIGNATURE_HEADER: signing.signature_header(secret, timestamp, body),
            }
            # httpx's timeouts are per step (connect, each read); this one bounds the whole.
            # Streamed and closed unread: a receiver's answer body is not needed, and a huge
            # one must not cost memory.
            async with (
                asyncio.timeout(self.settings.webhook_timeout_s),
                self._client.stream("POST", claim.url, content=body, headers=headers) as r,
            ):
                status_code = r.status_code
                if not 200 <= status_code < 300:
                    error = f"the receiver answered HTTP {status_code}"
                    retry_after = _retry_after(r)
        except (httpx.TimeoutException, TimeoutError):
            error = f"no answer within {self.settings.webhook_timeout_s:g}s"
        except httpx.HTTPError as exc:
            # httpx messages can quote the URL, whose path or query may be a credential.
            error = f"{type(exc).__name__}: {exc}".replace(claim.url, url_origin(claim.url))
        except MetalbusError as exc:
            error = exc.message
        except Exception as exc:  # anything else must still end as a logged, retried attempt
            log.warning("webhook %s: unexpected %s", claim.webhook_id, type(exc).__name__)
            error = f"unexpected {type(exc).__name__}"
        return _Outcome(
            started_at=started_at,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            status_code=status_code,
            error=error[:500] if error else None,
            retry_after=retry_after,
        )

    def _record_attempt(
        self, connection: Connection, claim: _Claim, outcome: _Outcome
    ) -> DeliveryStatus | None:
        """Log the attempt and decide what comes next; None when the delivery is gone."""
        s = self.settings
        number = claim.attempts + 1
        now = utcnow()
        values: dict[str, Any] = {
            "attempts": number,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
            "leased_until": None,
            "leased_by": None,
        }
        if outcome.ok:
            status = DeliveryStatus.SUCCEEDED
        else:
            delay = backoff(number, s.webhook_backoff_s, s.webhook_backoff_max_s)
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, s.webhook_backoff_max_s))
            next_at = now + timedelta(seconds=delay)
            gave_up = number >= claim.attempt_limit or next_at > as_utc(claim.expires_at)
            status = DeliveryStatus.FAILED if gave_up else DeliveryStatus.PENDING
            if not gave_up:
                values["next_attempt_at"] = next_at
        values["status"] = status.value
        if status != DeliveryStatus.PENDING:
            values["completed_at"] = now
        done = connection.execute(
            update(_D).where(_D.c.id == claim.id, _D.c.leased_by == self.holder).values(**values)
        )
        if done.rowcount != 1:
            return None  # deleted with its subscription meanwhile
        connection.execute(
            insert(_A).values(
                delivery_id=claim.id,
                number=number,
                started_at=outcome.started_at,
                duration_ms=outcome.duration_ms,
                status_code=outcome.status_code,
                error=outcome.error,
            )
        )
        return status
