"""TFTP outcomes as events through the boot service's outbox: curl fetching a file and
asking for a missing one (again and again: one event), a client that reads ``tsize`` and
aborts as PXE ROMs do, and a flood of missing names held to the overall rate. Plus the
throttle itself, on a clock the test sets.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from metalbus.boot.tftp import codec
from metalbus.boot.tftp.codec import ErrorCode, OptionAck, Request
from metalbus.boot.throttle import Throttle
from metalbus.shared.contract.boot import (
    TftpFileNotFound,
    TftpTransferCompleted,
    TftpTransferFailed,
)
from metalbus.shared.events import decode_event
from tests.boot.conftest import Stack
from tests.boot.test_tftp_real_clients import run
from tests.conftest import skip_or_fail
from tests.helpers import async_wait_for


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def boot_with_tftp(stack: Stack, root: Path, **settings: Any) -> tuple[int, list[Any]]:
    """Boot serving TFTP from ``root``; the TFTP events it publishes, as they come."""
    seen: list[Any] = []

    async def collect(msg: Msg) -> None:
        seen.append(decode_event(msg.data).data)

    await stack.bus.subscribe_events("metalbus.evt.boot.tftp.>", collect)
    port = free_port()
    await stack.start_boot(
        tftp_address="127.0.0.1", tftp_port=port, boot_resources_dir=root, **settings
    )
    return port, seen


def read_tsize_then_abort(port: int, name: str) -> object:
    """A blocking client (run in a thread): the OACK it got before aborting."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        request = Request(codec.Opcode.RRQ, name, "octet", {"tsize": "0"})
        client.sendto(codec.build(request), ("127.0.0.1", port))
        reply, transfer = client.recvfrom(2048)
        client.sendto(codec.build(codec.Error(ErrorCode.NOT_DEFINED, "tsize read")), transfer)
    return codec.parse(reply)


def curl() -> str:
    path = shutil.which("curl")
    if path is None:
        skip_or_fail("curl is not installed (scripts/install-system-packages.sh)")
    assert path is not None
    return path


async def test_completed_not_found_once_and_aborted(stack: Stack, tmp_path: Path) -> None:
    root = tmp_path / "resources"
    root.mkdir()
    (root / "lpxelinux.0").write_bytes(b"\x90" * 40_000)
    port, seen = await boot_with_tftp(stack, root)
    out = tmp_path / "out"

    code, output = await run(curl(), "-sS", "-o", str(out), f"tftp://127.0.0.1:{port}/lpxelinux.0")
    assert code == 0, output
    for _ in range(3):  # a PXE ROM asking again and again: one event
        code, _ = await run(curl(), "-sS", "-o", str(out), f"tftp://127.0.0.1:{port}/missing.efi")
        assert code != 0

    # As a PXE ROM does: ask with tsize, read the OACK, abort with an ERROR.
    oack = await asyncio.to_thread(read_tsize_then_abort, port, "lpxelinux.0")
    assert isinstance(oack, OptionAck) and oack.options["tsize"] == "40000"

    await async_wait_for(lambda: len(seen) >= 3, 10, "three TFTP events")
    completed = [e for e in seen if isinstance(e, TftpTransferCompleted)]
    missing = [e for e in seen if isinstance(e, TftpFileNotFound)]
    failed = [e for e in seen if isinstance(e, TftpTransferFailed)]
    assert len(completed) == 1 and len(missing) == 1 and len(failed) == 1, seen
    assert completed[0].filename == "lpxelinux.0" and completed[0].size == 40_000
    assert completed[0].client_ip == "127.0.0.1" and completed[0].blksize == 512
    assert missing[0].filename == "missing.efi"
    assert failed[0].reason == "aborted" and failed[0].acknowledged_bytes == 0
    assert failed[0].size == 40_000
    assert stack.metric("metalbus_tftp_events_suppressed_total", outcome="not_found") == 2


async def test_a_flood_of_missing_names_is_held_to_the_rate(stack: Stack, tmp_path: Path) -> None:
    root = tmp_path / "resources"
    root.mkdir()
    port, seen = await boot_with_tftp(stack, root, events_per_s=2.0)
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for i in range(50):  # a different name each: only the overall rate holds them back
            name = f"forged-{i}"
            client.sendto(
                codec.build(Request(codec.Opcode.RRQ, name, "octet", {})), ("127.0.0.1", port)
            )

    def counted() -> float:
        return stack.metric("metalbus_tftp_transfers_total", outcome="refused")

    await async_wait_for(lambda: counted() == 50, 10, "50 refusals")
    elapsed = time.monotonic() - started
    suppressed = stack.metric("metalbus_tftp_events_suppressed_total", outcome="not_found")
    await async_wait_for(lambda: len(seen) == 50 - suppressed, 10, "the events let through")
    # a bucket of two, refilled at two a second while the flood was being refused
    assert 2 <= len(seen) <= 2 + 2 * elapsed + 1, (seen, elapsed)
    assert suppressed >= 50 - (2 + 2 * elapsed + 1)
    assert all(isinstance(e, TftpFileNotFound) for e in seen)


def test_throttle_per_key_interval_and_overall_rate() -> None:
    throttle = Throttle(interval_s=10.0, per_s=2.0)
    assert throttle.allow("a", 100.0)
    assert throttle.allow("b", 100.0)
    assert not throttle.allow("c", 100.0)  # the bucket (two) is empty
    assert throttle.allow("c", 100.5)  # half a second: one token back
    assert not throttle.allow("a", 105.0)  # within the key's interval
    assert throttle.allow("a", 110.0)  # the interval is over
    throttle.forget("a")
    assert throttle.allow("a", 111.0)  # a lost report: the next one goes
    flood = Throttle(interval_s=60.0, per_s=5.0)
    allowed = sum(flood.allow(i, 200.0 + i / 1000) for i in range(100_000))
    assert allowed <= 5 + 100 * 5  # 100 s of flood, five a second
    assert len(flood._last) <= 2 * 5 * 60  # only keys let through are remembered
