"""A metalbus TFTP server on loopback for the TFTP tests, and a small client of our own
that loses, repeats and reorders packets on purpose (loopback only)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from metalbus.boot.configs.provider import BootConfigs, MemoryConfigs
from metalbus.boot.configs.render import BootConfig
from metalbus.boot.tftp import codec
from metalbus.boot.tftp.codec import Ack, Data, Error, Opcode, OptionAck, Request
from metalbus.boot.tftp.files import BootFiles
from metalbus.boot.tftp.server import TftpMetrics, TftpServer
from metalbus.shared.metrics import ServiceMetrics
from tests.helpers import async_wait_for


@dataclass
class Tftp:
    """A running server, its root, its configs and its metrics."""

    server: TftpServer
    root: Path
    configs: BootConfigs
    memory: MemoryConfigs
    metrics: ServiceMetrics

    @property
    def port(self) -> int:
        return self.server.address[1]

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def tftp(tmp_path: Path) -> AsyncIterator[Tftp]:
    root = tmp_path / "root"
    root.mkdir()
    memory = MemoryConfigs()
    configs = BootConfigs(
        BootConfig("enlist", "ephemeral/vmlinuz", "ephemeral/initrd", "console=ttyS0"), memory
    )
    metrics = ServiceMetrics("boot")
    server = TftpServer(
        "127.0.0.1",
        0,
        BootFiles(root, configs.render_tftp),
        TftpMetrics(metrics),
        timeout_s=1.0,
        max_retries=3,
    )
    await server.start()
    try:
        yield Tftp(server, root, configs, memory, metrics)
    finally:
        await server.stop()


async def completed(tftp: Tftp, count: int) -> None:
    """The server counts a transfer when the client's last ACK is in: just after the
    client is done."""
    await async_wait_for(
        lambda: tftp.metric("metalbus_tftp_transfers_total", outcome="completed") == count,
        5,
        f"{count} completed transfers",
    )


class TransferFailed(AssertionError):
    """The server sent an ERROR, or went silent."""


@dataclass
class LossyClient:
    """A TFTP reader over a plain UDP socket (blocking; run it in a thread).

    ``drop``: block numbers (counted from 1, not wrapped) lost the first time they arrive.
    ``lose_acks``: the ACK after these blocks is not sent the first time (a lost ACK).
    ``repeat_acks``: every ACK is sent twice (a duplicating network).
    """

    port: int
    drop: set[int] = field(default_factory=set)
    lose_acks: set[int] = field(default_factory=set)
    repeat_acks: bool = False
    data_packets: int = 0
    server_tid: tuple[str, int] | None = None

    def fetch(self, name: str, options: dict[str, str] | None = None) -> bytes:
        blksize = int((options or {}).get("blksize", 512))
        window = int((options or {}).get("windowsize", 1))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            request = Request(Opcode.RRQ, name, "octet", options or {})
            sock.sendto(codec.build(request), ("127.0.0.1", self.port))
            chunks: list[bytes] = []
            expected, in_window, last_ack = 1, 0, -1

            def ack(block: int) -> None:
                nonlocal last_ack
                if block in self.lose_acks:
                    self.lose_acks.discard(block)
                    return
                assert self.server_tid is not None
                for _ in range(2 if self.repeat_acks else 1):
                    sock.sendto(codec.build(Ack(block & 0xFFFF)), self.server_tid)
                last_ack = block

            while True:
                try:
                    data, addr = sock.recvfrom(70000)
                except TimeoutError:
                    raise TransferFailed("the server went silent") from None
                if self.server_tid is None:
                    self.server_tid = addr
                packet = codec.parse(data)
                if isinstance(packet, Error):
                    raise TransferFailed(f"ERROR {packet.code}: {packet.message}")
                if isinstance(packet, OptionAck):
                    ack(0)
                    continue
                assert isinstance(packet, Data)
                self.data_packets += 1
                block = expected - 1 + ((packet.block - (expected - 1)) & 0xFFFF)
                if block in self.drop:
                    self.drop.discard(block)
                    continue
                if block != expected:
                    # Out of order (a block before it was lost) or a repeat (our ACK was
                    # lost): say once where we are (RFC 7440), then wait.
                    if last_ack != expected - 1:
                        ack(expected - 1)
                        in_window = 0
                    continue
                chunks.append(packet.payload)
                expected += 1
                in_window += 1
                if len(packet.payload) < blksize:
                    ack(block)
                    return b"".join(chunks)
                if in_window == window:
                    ack(block)
                    in_window = 0
