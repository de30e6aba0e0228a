"""One read transfer: its own UDP socket (the server's transfer ID), windows of DATA blocks
(RFC 7440; a window of 1 is RFC 1350's lockstep), ACKs, retransmission on timeout.

A state machine driven by the socket's callbacks: an ACK that moves the window sends the
next one at once, from a cache of file chunks read ahead in a worker thread (so the loop
never waits on the disk while the next chunk is there already).

Block numbers on the wire are 16 bits and wrap after 65535 to 0 (as tftpd-hpa and curl
expect); inside, blocks are counted from 1 without wrapping, and an ACK is mapped to the
one block of the window it can mean.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

from . import codec
from .codec import Ack, Error, ErrorCode, MalformedPacket, OptionAck
from .files import Source
from .options import Params

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
BURST_BYTES = 64 * 1024
Outcome = Literal["completed", "timeout", "aborted", "failed"]


@dataclass
class TransferHooks:
    """What a transfer reports to the server (metrics)."""

    dropped: Callable[[str], None]
    retransmitted: Callable[[int], None]
    sent_bytes: Callable[[int], None]


class Transfer(asyncio.DatagramProtocol):
    """Sends ``source`` to ``peer``; ``done`` resolves to the outcome."""

    def __init__(
        self,
        peer: tuple[str, int],
        source: Source,
        params: Params,
        hooks: TransferHooks,
        *,
        max_retries: int,
    ) -> None:
        self.peer = peer
        self.source = source
        self.params = params
        self.hooks = hooks
        self.max_retries = max_retries
        self.done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.DatagramTransport | None = None
        blksize = params.blksize
        self.blocks = source.size // blksize + 1  # the last one is short, maybe empty
        self.chunk_blocks = max(CHUNK_BYTES // blksize, params.windowsize, 1)
        self._chunks: dict[int, bytes] = {}
        self._loading: dict[int, asyncio.Task[None]] = {}
        self._awaiting_oack = params.accepted is not None
        self._base = 1  # the first block not acknowledged
        self._next = 1  # the next block of the window to send
        self._sent_max = 0  # the highest block sent so far
        self._window_end = 0
        self._restarted = False  # a window restarted by a repeated ACK (once per window)
        self._retries = 0
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._pacer: asyncio.Handle | None = None

    @property
    def acknowledged_bytes(self) -> int:
        """File bytes the client has acknowledged so far."""
        return min((self._base - 1) * self.params.blksize, self.source.size)

    # -- socket callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def start(self) -> None:
        """Send the OACK (options were accepted) or the first window."""
        if self._awaiting_oack:
            self._send_oack()
        else:
            self._send_window()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.done.done():
            return
        if addr[:2] != self.peer[:2]:
            # RFC 1350: a packet from another TID gets an error; this transfer goes on.
            self._send(codec.build(Error(ErrorCode.UNKNOWN_TID, "unknown transfer ID")), addr)
            self.hooks.dropped("unknown_tid")
            return
        if len(data) == 4 and data[0] == 0 and data[1] == 4:  # an ACK: the hot path
            self._on_ack((data[2] << 8) | data[3])
            return
        try:
            packet = codec.parse(data)
        except MalformedPacket:
            self.hooks.dropped("malformed")
            return
        if isinstance(packet, Ack):
            self._on_ack(packet.block)
        elif isinstance(packet, Error):
            self._finish("aborted")  # the client gave up (or only wanted the tsize)
        else:
            self.hooks.dropped("unexpected")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: the client is gone. The timer ends the transfer.
        log.debug("tftp transfer to %s: %s", self.peer, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self._finish("failed")

    # -- protocol ----------------------------------------------------------------------

    def _on_ack(self, block: int) -> None:
        if self._awaiting_oack:
            if block == 0:
                self._awaiting_oack = False
                self._retries = 0
                self._send_window()
            else:
                self.hooks.dropped("stale_ack")
            return
        last_acked = self._base - 1
        acked = last_acked + ((block - last_acked) & 0xFFFF)
        if acked == last_acked:
            # A repeated ACK. In lockstep it is ignored (resending on it would double every
            # packet from then on: the Sorcerer's Apprentice bug); the timer resends. With a
            # window it says the window's first block was lost (RFC 7440): resend it, once.
            self.hooks.dropped("duplicate_ack")
            if self.params.windowsize > 1 and not self._restarted and self._next > self._base:
                self._restarted = True
                self.hooks.retransmitted(self._next - self._base)
                self._send_window()
            return
        if acked > self._sent_max:
            self.hooks.dropped("stale_ack")  # never sent: an old ACK from before a wrap
            return
        partial = acked < self._window_end
        self._base = acked + 1
        self._retries = 0
        # After a partial ACK (the client saw a gap) the window starts again after it; a
        # repeat of that ACK, sent as the rest of the old window arrives, is not a new loss.
        self._restarted = partial
        if acked == self.blocks:
            self._finish("completed")
            return
        if partial:
            self.hooks.retransmitted(max(0, min(self._sent_max, self._window_end) - acked))
        self._send_window()

    def _send_oack(self) -> None:
        assert self.params.accepted is not None
        self._send(codec.build(OptionAck(self.params.accepted)))
        self._arm()

    def _send_window(self) -> None:
        """Send blocks ``base``.. up to the window's size (from the first one again after a
        partial ACK or a timeout)."""
        self._window_end = min(self._base + self.params.windowsize - 1, self.blocks)
        self._next = self._base
        if self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None
        self._evict()
        self._pump()

    def _pump(self) -> None:
        self._pacer = None
        blksize = self.params.blksize
        burst = 0
        while self._next <= self._window_end:
            if burst >= BURST_BYTES:
                self._count(burst)
                # Let the loop (and, on one host, the client) breathe between bursts: a
                # window sent in one go overflows a client's socket buffer.
                self._pacer = asyncio.get_running_loop().call_soon(self._pump)
                return
            block = self._next
            chunk_index, within = divmod(block - 1, self.chunk_blocks)
            chunk = self._chunks.get(chunk_index)
            if chunk is None:
                self._load(chunk_index)
                self._cancel_timer()
                self._count(burst)
                return  # the load calls _pump again
            if within == 0 or block == self._base:
                self._load(chunk_index + 1)  # read ahead
            payload = chunk[within * blksize : (within + 1) * blksize]
            self._send(codec.data_header(block) + payload)
            burst += len(payload) + 4
            self._sent_max = max(self._sent_max, block)
            self._next += 1
        self._count(burst)
        self._arm()

    def _count(self, burst: int) -> None:
        if burst:
            # Bytes sent, less the 4-byte headers (counted once a burst, not per packet).
            packets = -(-burst // (self.params.blksize + 4))
            self.hooks.sent_bytes(burst - 4 * packets)

    def _load(self, index: int) -> None:
        if index in self._chunks or index in self._loading:
            return
        if index * self.chunk_blocks >= self.blocks:
            return
        task = asyncio.create_task(self._read_chunk(index))
        self._loading[index] = task

    async def _read_chunk(self, index: int) -> None:
        size = self.chunk_blocks * self.params.blksize
        try:
            data = await self.source.read(index * size, size)
        except Exception as exc:
            log.warning("tftp read of %s failed: %s", self.peer, exc)
            self._send(codec.build(Error(ErrorCode.NOT_DEFINED, "read error")))
            self._finish("failed")
            return
        finally:
            self._loading.pop(index, None)
        if self.done.done():
            return
        self._chunks[index] = data
        if self._next <= self._window_end and self._pacer is None:
            self._pump()

    def _evict(self) -> None:
        keep_from = (self._base - 1) // self.chunk_blocks
        if len(self._chunks) <= 2 and min(self._chunks, default=keep_from) >= keep_from:
            return
        for index in [i for i in self._chunks if i < keep_from]:
            del self._chunks[index]

    # -- timer -------------------------------------------------------------------------

    def _arm(self) -> None:
        # One timer per transfer that moves its own deadline: re-arming on every window
        # costs a float, not a new timer handle.
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.params.timeout_s
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._check_deadline)

    def _cancel_timer(self) -> None:
        self._deadline = None

    def _check_deadline(self) -> None:
        self._timer = None
        if self._deadline is None or self.done.done():
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._check_deadline)
            return
        self._deadline = None
        self._timed_out()

    def _timed_out(self) -> None:
        self._retries += 1
        if self._retries > self.max_retries:
            self._finish("timeout")
            return
        if self._awaiting_oack:
            self.hooks.retransmitted(1)
            self._send_oack()
        else:
            self.hooks.retransmitted(self._window_end - self._base + 1)
            self._send_window()

    # -- end ---------------------------------------------------------------------------

    def _send(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr or self.peer)

    def _finish(self, outcome: Outcome) -> None:
        if self.done.done():
            return
        self._cancel_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pacer is not None:
            self._pacer.cancel()
        for task in self._loading.values():
            task.cancel()
        self._chunks.clear()
        self.source.close()
        if self.transport is not None:
            self.transport.close()
        self.done.set_result(outcome)

    def abort(self, message: str) -> None:
        """Stop now, telling the client (the service is stopping)."""
        self._send(codec.build(Error(ErrorCode.NOT_DEFINED, message)))
        self._finish("aborted")
