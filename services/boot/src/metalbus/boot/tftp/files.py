"""What a file name in a read request means: a file under the boot-resources root, or a
virtual file rendered per machine, or a refusal.

Names are relative to the root; a leading ``/`` is the root's (as ``in.tftpd -s`` does, and
GRUB sends), never the host's. ``..``, control characters, and symbolic links that lead
out of the root are refused; only regular files are served. Disk reads run in the default
executor, one chunk at a time, so a large file never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import os
import stat as stat_mode
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from .codec import ErrorCode

_READERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="boot-file-read")
"""Disk reads of every transfer (threads start on first use)."""


class Refused(Exception):
    """A request the server answers with an ERROR packet."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Source(Protocol):
    """The bytes of one file being sent."""

    size: int

    async def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``."""

    def close(self) -> None:
        """Release the file."""


class MemorySource:
    """A rendered file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    async def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def close(self) -> None:
        pass


class DiskSource:
    """An open file under the root, read with ``os.pread`` in a worker thread.

    ``close`` while a read is still in its thread closes the descriptor when that read
    returns (never under it: the number could be reused by another file).
    """

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._reading = 0
        self._closing = False

    async def read(self, offset: int, length: int) -> bytes:
        loop = asyncio.get_running_loop()
        job = _READERS.submit(os.pread, self.fd, length, offset)
        self._reading += 1
        # Counted down when the thread is done, even if the awaiting task was cancelled.
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._read_done))
        return await asyncio.wrap_future(job)

    def _read_done(self) -> None:
        self._reading -= 1
        if self._closing and not self._reading:
            self._close_now()

    def close(self) -> None:
        self._closing = True
        if not self._reading:
            self._close_now()

    def _close_now(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def safe_relative(filename: str) -> str:
    """The request's name as a clean relative path.

    Raises:
        Refused: ``..`` components, control characters, or an empty name.
    """
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in filename):
        raise Refused(ErrorCode.ACCESS_VIOLATION, "control character in file name")
    parts = [part for part in filename.replace("\\", "/").split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise Refused(ErrorCode.ACCESS_VIOLATION, "'..' is not allowed")
    if not parts:
        raise Refused(ErrorCode.FILE_NOT_FOUND, "no file name")
    return "/".join(parts)


def resolve_under(root: Path, relative: str) -> str:
    """The real path of ``relative`` (symbolic links resolved), if it stays under ``root``.

    Raises:
        Refused: the real path is outside the root.
    """
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, relative))
    if os.path.commonpath([real_root, real]) != real_root:
        raise Refused(ErrorCode.ACCESS_VIOLATION, "outside the boot root")
    return real


def _open_under(root: Path, relative: str) -> tuple[int, int]:
    real = resolve_under(root, relative)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Refused(ErrorCode.FILE_NOT_FOUND, "file not found") from None
    except OSError as exc:
        raise Refused(ErrorCode.ACCESS_VIOLATION, exc.strerror or "cannot open") from None
    stat = os.fstat(fd)
    if not stat_mode.S_ISREG(stat.st_mode):
        os.close(fd)
        raise Refused(ErrorCode.FILE_NOT_FOUND, "not a file")
    return fd, stat.st_size


class BootFiles:
    """The files TFTP (and HTTP boot) serve: virtual ones first, then the root's."""

    def __init__(self, root: Path, virtual: Callable[[str], Awaitable[bytes | None]]) -> None:
        self.root = root
        self.virtual = virtual

    async def open(self, filename: str) -> Source:
        """The source of ``filename``.

        Raises:
            Refused: unsafe name (access violation), or no such file (file not found).
        """
        relative = safe_relative(filename)
        rendered = await self.virtual(relative)
        if rendered is not None:
            return MemorySource(rendered)
        loop = asyncio.get_running_loop()
        fd, size = await loop.run_in_executor(None, _open_under, self.root, relative)
        return DiskSource(fd, size)
