"""Which config a MAC gets, and the "virtual" files TFTP and HTTP boot serve from it.

pxelinux asks for ``pxelinux.cfg/01-<mac with dashes>``, then its UUID and IP prefixes,
then ``pxelinux.cfg/default``; GRUB for ``grub/grub.cfg-<mac with colons>``, then
``grub/grub.cfg``. Per-MAC names of unknown MACs, and ``default``, render the enlistment
config (a machine nobody set a purpose for is a new one); UUID and IP names are not found,
so pxelinux moves on to the next name quickly.
"""

from __future__ import annotations

import re
from typing import Protocol

from . import render
from .render import BootConfig

_HEX = "[0-9a-f]{2}"
_PXELINUX_MAC = re.compile(rf"pxelinux\.cfg/01-({_HEX}(?:-{_HEX}){{5}})")
_GRUB_MAC = re.compile(rf"grub/grub\.cfg-(?:01-)?({_HEX}(?:[-:]{_HEX}){{5}})")


class ConfigSource(Protocol):
    """Where the configs set for MACs live."""

    async def get(self, mac: str) -> BootConfig | None:
        """The config set for ``mac`` (lower-case, colons), or None."""


class MemoryConfigs:
    """Configs in a dict (a TFTP server without a database: the benchmark, tests)."""

    def __init__(self) -> None:
        self.by_mac: dict[str, BootConfig] = {}

    async def get(self, mac: str) -> BootConfig | None:
        return self.by_mac.get(mac)


class BootConfigs:
    """The boot config of each MAC from ``source``; others enlist."""

    def __init__(self, enlist: BootConfig, source: ConfigSource | None = None) -> None:
        self.enlist = enlist
        self.source: ConfigSource = source or MemoryConfigs()

    async def get(self, mac: str | None) -> BootConfig:
        """The MAC's config; the enlistment one for unknown MACs and for no MAC."""
        if not mac:
            return self.enlist
        return await self.source.get(mac) or self.enlist

    async def render_tftp(self, path: str) -> bytes | None:
        """The bytes of a virtual file, or None when ``path`` is not one."""
        name = path.lower()
        if name == "pxelinux.cfg/default":
            return render.pxelinux(self.enlist, None)
        if name == "grub/grub.cfg":
            return render.grub(self.enlist, None)
        if match := _PXELINUX_MAC.fullmatch(name):
            mac = match.group(1).replace("-", ":")
            return render.pxelinux(await self.get(mac), mac)
        if match := _GRUB_MAC.fullmatch(name):
            mac = match.group(1).replace("-", ":")
            return render.grub(await self.get(mac), mac)
        return None
