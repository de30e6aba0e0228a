"""A QEMU machine (TCG) that boots metalbus's ephemeral environment (built once per test
session by ``conftest.py``).

The VM's serial console goes to a file; the tests read the environment's ``metalbus:``
lines from it and print it when a stage misses its deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from metalbus.boot.ephemeral.build import SUBDIR
from tests.conftest import skip_or_fail

QEMU = "qemu-system-x86_64"


class Vm:
    """One QEMU process; ``console`` is its serial output."""

    def __init__(self, console: Path, disk: Path) -> None:
        self.console = console
        self.disk = disk
        self.process: asyncio.subprocess.Process | None = None
        self.started = 0.0

    @staticmethod
    def make_disk(path: Path, size: int = 64 * 1024 * 1024) -> Path:
        with path.open("wb") as f:
            f.truncate(size)
        return path

    async def start(self, *args: str, prefix: tuple[str, ...] = ()) -> None:
        """QEMU with 512 MiB, 2 CPUs, the disk as virtio-blk with a serial, and ``args``."""
        command = [
            *prefix, QEMU, "-m", "512", "-smp", "2", "-display", "none", "-monitor", "none",
            "-no-reboot", "-serial", f"file:{self.console}",
            "-drive", f"file={self.disk},format=raw,if=none,id=d0",
            "-device", "virtio-blk-pci,drive=d0,serial=MB-DISK-0001",
            *args,
        ]  # fmt: skip
        self.started = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )

    async def wait_exit(self, deadline_s: float) -> int:
        """The VM powered itself off (the environment's last step) within the deadline."""
        assert self.process is not None
        try:
            await asyncio.wait_for(self.process.wait(), deadline_s)
        except TimeoutError:
            raise AssertionError(
                f"the VM did not power off within {deadline_s} s; console:\n{self.text()}"
            ) from None
        return self.process.returncode or 0

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def hardware(self) -> dict[str, object]:
        """The environment's ``metalbus-hardware:`` line (everything it gathered)."""
        for line in self.text().splitlines():
            if line.startswith("metalbus-hardware: "):
                return json.loads(line.removeprefix("metalbus-hardware: "))  # type: ignore[no-any-return]
        raise AssertionError(f"no hardware line on the console:\n{self.text()}")


def marker(disk: Path) -> bytes:
    """What the deploy environment wrote at the start of the first disk."""
    with disk.open("rb") as f:
        return f.read(512).rstrip(b"\0")


def kernel_and_initrd(root: Path) -> tuple[str, str]:
    return str(root / SUBDIR / "vmlinuz"), str(root / SUBDIR / "initrd.img")


def need_root() -> None:
    if os.geteuid() != 0:
        skip_or_fail("the journey needs root (network namespaces, a bridge, a tap)")
