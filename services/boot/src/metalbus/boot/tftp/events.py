"""TFTP outcomes as events (transfer completed or failed, file not found), and the boot
files HTTP boot served.

The TFTP server calls :meth:`TftpEvents.report` as each request ends, HTTP boot
:meth:`TftpEvents.served` as it sends a file (no I/O in either). A
:class:`~metalbus.boot.throttle.Throttle`, one for both, lets one event per (client, file,
outcome) through per interval (a PXE ROM asking for the same missing file again and again
makes one event) and a bounded number a second in all; what it holds back is counted, not
queued. The rest is told who fetched them (:mod:`metalbus.boot.clients`: the MAC, its
purpose, the kind of file; HTTP files that are no boot file are dropped there) and written
to the outbox in batches, one transaction for all the events that came in while the
previous one was written, and the outbox relay publishes them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import asdict, dataclass

from prometheus_client import Counter
from sqlalchemy import Connection

from metalbus.shared.contract.boot import (
    HttpBootFileServed,
    TftpFileNotFound,
    TftpTransferCompleted,
    TftpTransferFailed,
)
from metalbus.shared.db import Database
from metalbus.shared.events import EventPayload, new_event
from metalbus.shared.metrics import ServiceMetrics
from metalbus.shared.outbox import stage_on

from ..clients import BootClient, BootClients
from ..throttle import Throttle
from .server import TftpReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpServed:
    """HTTP boot sent a file (its whole size, even for a range)."""

    filename: str
    client_ip: str
    size: int


def payload(report: TftpReport | HttpServed, client: BootClient) -> EventPayload | None:
    """The event about one outcome (None: an HTTP file that is no boot file)."""
    filename = report.filename[:255]
    client_ip = report.client_ip.split("%", 1)[0]  # no IPv6 link-local "%scope" suffix
    who = asdict(client)
    if isinstance(report, HttpServed):
        if client.file_kind is None:
            return None
        return HttpBootFileServed(filename=filename, client_ip=client_ip, size=report.size, **who)
    if report.outcome == "completed":
        return TftpTransferCompleted(
            **who,
            filename=filename,
            client_ip=client_ip,
            size=report.size,
            seconds=round(report.seconds, 6),
            blksize=report.blksize,
            windowsize=report.windowsize,
        )
    if report.outcome == "not_found":
        return TftpFileNotFound(filename=filename, client_ip=client_ip, **who)
    return TftpTransferFailed(
        **who,
        filename=filename,
        client_ip=client_ip,
        reason=report.outcome,
        acknowledged_bytes=report.acknowledged_bytes,
        size=report.size,
    )


class TftpEvents:
    """Throttles TFTP outcomes and HTTP boot files served, and writes the events let through
    to the outbox."""

    def __init__(
        self,
        db: Database,
        metrics: ServiceMetrics,
        clients: BootClients,
        *,
        interval_s: float,
        per_s: float,
    ) -> None:
        self.db = db
        self.clients = clients
        self.throttle = Throttle(interval_s, per_s)
        self.suppressed = Counter(
            "metalbus_tftp_events_suppressed",
            "TFTP and HTTP boot events not emitted (the same client, file and outcome within "
            "the interval, or over the rate), by outcome (http_served for HTTP boot)",
            ["outcome"],
            registry=metrics.registry,
        ).labels
        self._pending: list[TftpReport | HttpServed] = []
        self._wake = asyncio.Event()

    def report(self, report: TftpReport) -> None:
        """Take one outcome (the TFTP server's hook): queued when the throttle allows."""
        self._take(report, report.outcome)

    def served(self, filename: str, client_ip: str, size: int) -> None:
        """Take one file HTTP boot sent (the HTTP app's hook): queued when the throttle
        allows (whether it is a boot file is known once its client's config is read)."""
        self._take(HttpServed(filename, client_ip, size), "http_served")

    def _take(self, report: TftpReport | HttpServed, outcome: str) -> None:
        if not self.throttle.allow((report.client_ip, report.filename, outcome), time.monotonic()):
            self.suppressed(outcome).inc()
            return
        self._pending.append(report)
        self._wake.set()

    async def run(self) -> None:
        """Write the queued events, a batch per transaction, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                payloads = await self._payloads(batch)
                if payloads:
                    await self.db.run_transaction(functools.partial(_stage, payloads=payloads))
            except Exception as exc:  # the database is away: these reports are lost
                log.warning("%d TFTP/HTTP boot events not written: %s", len(batch), exc)

    async def _payloads(self, batch: list[TftpReport | HttpServed]) -> list[EventPayload]:
        """The batch's events, each told who fetched the file."""
        payloads = []
        for report in batch:
            client = await self.clients.describe(report.filename, report.client_ip)
            if (event := payload(report, client)) is not None:
                payloads.append(event)
        return payloads


def _stage(connection: Connection, payloads: list[EventPayload]) -> None:
    for item in payloads:
        stage_on(connection, new_event(item, subject=getattr(item, "client_ip", None)))
