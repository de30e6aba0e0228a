"""Which config a MAC gets, and the "virtual" files TFTP and HTTP boot serve from it.

pxelinux asks for ``pxelinux.cfg/<uuid>`` (when the firmware has one), then
``pxelinux.cfg/01-<mac with dashes>``, then IP prefixes, then ``pxelinux.cfg/default``; GRUB
for ``grub/grub.cfg-<mac with colons>`` (MAAS's way; ``grub.cfg-01-<mac>`` as upstream GRUB
searches), then ``grub/grub.cfg``. Per-MAC names of unknown MACs, and ``default``, render
the enlistment config (a machine nobody set a purpose for is a new one). A UUID name is
served when a config was set with that UUID (``grub/grub.cfg-<uuid>`` too, for GRUB builds
that search by UUID, and the iPXE script); otherwise it is not found, as IP names are, so
the loader moves on to its MAC name at once.
"""

from __future__ import annotations

import re
from typing import Protocol

from . import render
from .render import BootConfig

_HEX = "[0-9a-f]{2}"
_PXELINUX_MAC = re.compile(rf"pxelinux\.cfg/01-({_HEX}(?:-{_HEX}){{5}})")
_GRUB_MAC = re.compile(rf"grub/grub\.cfg-(?:01-)?({_HEX}(?:[-:]{_HEX}){{5}})")
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_PXELINUX_UUID = re.compile(rf"pxelinux\.cfg/({UUID})")
_GRUB_UUID = re.compile(rf"grub/grub\.cfg-({UUID})")
_IPXE_MAC = re.compile(rf"ipxe\.cfg-({_HEX}(?:[-:]{_HEX}){{5}})")


def mac_in_name(path: str) -> str | None:
    """The MAC a per-machine config name carries (pxelinux, GRUB or iPXE), lower case with
    colons; None for other names."""
    name = path.lower()
    for pattern in (_PXELINUX_MAC, _GRUB_MAC, _IPXE_MAC):
        if match := pattern.fullmatch(name):
            return match.group(1).replace("-", ":")
    return None


class ConfigSource(Protocol):
    """Where the configs set for MACs live."""

    async def get(self, mac: str) -> BootConfig | None:
        """The config set for ``mac`` (lower-case, colons), or None."""

    async def get_by_uuid(self, uuid: str) -> tuple[str, BootConfig] | None:
        """The MAC and config set with machine UUID ``uuid`` (lower case), or None."""


class MemoryConfigs:
    """Configs in a dict (a TFTP server without a database: the benchmark, tests)."""

    def __init__(self) -> None:
        self.by_mac: dict[str, BootConfig] = {}
        self.mac_of_uuid: dict[str, str] = {}

    async def get(self, mac: str) -> BootConfig | None:
        return self.by_mac.get(mac)

    async def get_by_uuid(self, uuid: str) -> tuple[str, BootConfig] | None:
        mac = self.mac_of_uuid.get(uuid)
        config = self.by_mac.get(mac) if mac else None
        return (mac, config) if mac and config else None


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
        if match := _PXELINUX_UUID.fullmatch(name):
            if found := await self.source.get_by_uuid(match.group(1)):
                return render.pxelinux(found[1], found[0])
        elif match := _GRUB_UUID.fullmatch(name):
            if found := await self.source.get_by_uuid(match.group(1)):
                return render.grub(found[1], found[0])
        return None
