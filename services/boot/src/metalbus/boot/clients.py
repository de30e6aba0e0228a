"""Who fetched a boot file, and what the file is to it, for the TFTP and HTTP boot events.

TFTP and HTTP see only the client's IP. The DHCP server's leases (in memory) say which MAC
holds that IP; a per-machine config name (``pxelinux.cfg/01-<mac>``, ``grub.cfg-<mac>``,
``ipxe.cfg-<mac>``) says it outright. The config set for the MAC gives the purpose, and
the kernel and initrd paths that tell a kernel fetch from any other file. The api follows
a machine's boot by these (see docs/machines.md).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from metalbus.shared.contract.boot import BootFileKind, BootPurpose

from .configs.provider import BootConfigs, mac_in_name
from .dhcp.leases import LeaseTable
from .dhcp.pxe import BIOS, BY_ARCH

LOADERS = frozenset(
    {m.bootfile for m in (BIOS, *BY_ARCH.values())}
    # what those chain to, or what an operator may name in place of them
    | {"pxelinux.0", "grubx64.efi", "grubaa64.efi", "shimx64.efi", "shimaa64.efi"}
)
"""Boot loaders by name (the files DHCP hands out, and their usual second stages)."""

_CONFIGS = ("pxelinux.cfg/", "grub/grub.cfg", "ipxe.cfg")


@dataclass(frozen=True)
class BootClient:
    """What the boot service knows about a fetch (each part None when it does not)."""

    mac: str | None
    purpose: BootPurpose | None
    file_kind: BootFileKind | None


class BootClients:
    """Tells who fetched ``filename`` from ``client_ip``."""

    def __init__(self, leases: LeaseTable, configs: BootConfigs) -> None:
        self.leases = leases
        self.configs = configs

    def mac_of(self, client_ip: str) -> str | None:
        """The MAC holding an unexpired lease on ``client_ip`` here, or None."""
        try:
            address = ipaddress.ip_address(client_ip.split("%", 1)[0])
        except ValueError:
            return None
        if not isinstance(address, ipaddress.IPv4Address):
            return None  # DHCPv4 leases only
        lease = self.leases.by_ip.get(int(address))
        if lease is None or lease.expires <= time.time():
            return None
        return lease.mac

    async def describe(self, filename: str, client_ip: str) -> BootClient:
        """The MAC, purpose and file kind of one fetch (reads the MAC's config)."""
        name = filename.lower().lstrip("/")
        mac = mac_in_name(name) or self.mac_of(client_ip)
        config = await self.configs.source.get(mac) if mac else None
        # A MAC without a config enlists: its kernel and initrd are the enlistment ones.
        effective = config or self.configs.enlist
        kind: BootFileKind | None = None
        if name.rsplit("/", 1)[-1] in LOADERS:
            kind = "loader"
        elif name.startswith(_CONFIGS):
            kind = "config"
        elif effective.kernel and name == effective.kernel.lower().lstrip("/"):
            kind = "kernel"
        elif effective.initrd and name == effective.initrd.lower().lstrip("/"):
            kind = "initrd"
        return BootClient(mac, config.purpose if config else None, kind)
