"""The TFTP server: a socket on the well-known port takes requests; each read request gets a
:class:`~.transfer.Transfer` on a socket of its own (a new transfer ID), so transfers run
side by side and one slow client holds up no other.

Write requests are refused (ERROR 2), as are modes other than octet (``netascii`` would need
line-end translation, which no network boot program asks for). Packets that are not TFTP
are dropped and counted, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

from prometheus_client import Counter, Gauge

from metalbus.shared.metrics import ServiceMetrics
from metalbus.shared.tasks import cancel_all

from . import codec
from .codec import Error, ErrorCode, MalformedPacket, Opcode, Request
from .files import BootFiles, Refused, Source
from .options import negotiate
from .transfer import Transfer, TransferHooks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TftpReport:
    """How one read request ended, for the events (:mod:`.events`)."""

    filename: str
    client_ip: str
    outcome: Literal["completed", "timeout", "aborted", "failed", "not_found"]
    size: int = 0
    acknowledged_bytes: int = 0
    seconds: float = 0.0
    blksize: int = 0
    windowsize: int = 0


class TftpMetrics:
    """What the TFTP server counts, on the service's ``/metrics``."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        registry = metrics.registry
        self.requests = Counter(
            "metalbus_tftp_requests",
            "TFTP requests, by kind (rrq, wrq)",
            ["kind"],
            registry=registry,
        ).labels
        self.transfers = Counter(
            "metalbus_tftp_transfers",
            "TFTP transfers ended, by outcome (completed, timeout, aborted, failed, refused)",
            ["outcome"],
            registry=registry,
        ).labels
        self.dropped = Counter(
            "metalbus_tftp_dropped",
            "TFTP packets ignored, by reason (malformed, unexpected, duplicate_ack, ...)",
            ["reason"],
            registry=registry,
        ).labels
        self.retransmitted = Counter(
            "metalbus_tftp_retransmitted_blocks", "DATA blocks sent again", registry=registry
        )
        self.sent_bytes = Counter(
            "metalbus_tftp_sent_bytes", "File bytes sent in DATA blocks", registry=registry
        )
        self.active = Gauge(
            "metalbus_tftp_active_transfers", "Transfers running", registry=registry
        )


class TftpServer(asyncio.DatagramProtocol):
    """Listens on ``host:port``; ``start`` binds, ``stop`` ends every transfer."""

    def __init__(
        self,
        host: str,
        port: int,
        files: BootFiles,
        metrics: TftpMetrics,
        *,
        timeout_s: float = 1.0,
        max_retries: int = 5,
        max_blksize: int = 65464,
        max_windowsize: int = 64,
        report: Callable[[TftpReport], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.files = files
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_blksize = max_blksize
        self.max_windowsize = max_windowsize
        self.report = report
        self.transport: asyncio.DatagramTransport | None = None
        self.transfers: set[Transfer] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._hooks = TransferHooks(
            dropped=lambda reason: metrics.dropped(reason).inc(),
            retransmitted=metrics.retransmitted.inc,
            sent_bytes=metrics.sent_bytes.inc,
        )

    @property
    def address(self) -> tuple[str, int]:
        """Where the server listens (the port bound, when 0 was asked)."""
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    async def start(self) -> None:
        """Bind the request socket.

        Raises:
            OSError: the address is taken or cannot be bound.
        """
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))

    async def stop(self) -> None:
        """Close the request socket and end every transfer."""
        if self.transport is not None:
            self.transport.close()
        for transfer in list(self.transfers):
            transfer.abort("server stopping")
        await cancel_all(self._tasks)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            packet = codec.parse(data)
        except MalformedPacket:
            self.metrics.dropped("malformed").inc()
            return
        if not isinstance(packet, Request):
            self.metrics.dropped("unexpected").inc()  # a stray ACK or DATA on port 69
            return
        task = asyncio.create_task(self._serve(packet, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, request: Request, peer: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        kind = "rrq" if request.opcode == Opcode.RRQ else "wrq"
        self.metrics.requests(kind).inc()
        # The reply, error or data, comes from a new socket: the transfer's ID.
        local = (self.address[0], 0)
        try:
            source = await self._open(request)
        except Refused as refused:
            log.info("tftp %s from %s refused: %s", request.filename, peer[0], refused.message)
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=local
            )
            transport.sendto(codec.build(Error(refused.code, refused.message)), peer)
            transport.close()
            self.metrics.transfers("refused").inc()
            if refused.code == ErrorCode.FILE_NOT_FOUND and self.report is not None:
                self.report(TftpReport(request.filename, peer[0], "not_found"))
            return
        params = negotiate(
            request.options,
            source.size,
            default_timeout_s=self.timeout_s,
            max_blksize=self.max_blksize,
            max_windowsize=self.max_windowsize,
        )
        transfer = Transfer(peer, source, params, self._hooks, max_retries=self.max_retries)
        try:
            await loop.create_datagram_endpoint(lambda: transfer, local_addr=local)
        except BaseException:
            source.close()
            raise
        self.transfers.add(transfer)
        self.metrics.active.inc()
        started = time.monotonic()
        try:
            transfer.start()
            outcome = await transfer.done
        finally:
            self.transfers.discard(transfer)
            self.metrics.active.dec()
            if not transfer.done.done():
                transfer.abort("server stopping")
        self.metrics.transfers(outcome).inc()
        log.debug("tftp %s to %s: %s", request.filename, peer[0], outcome)
        if self.report is not None:
            self.report(
                TftpReport(
                    request.filename,
                    peer[0],
                    outcome,
                    size=source.size,
                    acknowledged_bytes=transfer.acknowledged_bytes,
                    seconds=time.monotonic() - started,
                    blksize=params.blksize,
                    windowsize=params.windowsize,
                )
            )

    async def _open(self, request: Request) -> Source:
        if request.opcode == Opcode.WRQ:
            raise Refused(ErrorCode.ACCESS_VIOLATION, "writes are not accepted")
        if request.mode != "octet":
            raise Refused(ErrorCode.ILLEGAL_OPERATION, "only octet mode is served")
        return await self.files.open(request.filename)
