"""A machine's boot config as pxelinux, GRUB and iPXE read it.

Kernel and initrd are paths under the boot-resources root: TFTP clients (pxelinux, GRUB)
fetch them by that path, iPXE by URL under the HTTP boot base. Two purposes boot no kernel:
``local`` hands over to the disk, ``poweroff`` has the boot loader switch the machine off
(pxelinux's ``poweroff.c32`` module, GRUB's ``halt``, iPXE's ``poweroff``), as MAAS does
for a machine that should stay off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Purpose = Literal["enlist", "commissioning", "deploy", "local", "poweroff", "rescue"]


@dataclass(frozen=True)
class BootConfig:
    """What one machine boots: an ephemeral or installed kernel, or its local disk."""

    purpose: Purpose
    kernel: str = ""
    initrd: str = ""
    cmdline: str = ""

    def full_cmdline(self, mac: str | None) -> str:
        """The kernel command line, with the purpose (and the MAC, as pxelinux's BOOTIF)."""
        parts = [self.cmdline, f"metalbus.purpose={self.purpose}"]
        if mac:
            parts.append("BOOTIF=01-" + mac.replace(":", "-"))
        return " ".join(part for part in parts if part)


def pxelinux(config: BootConfig, mac: str | None) -> bytes:
    """A pxelinux.cfg file: one label, booted at once."""
    if config.purpose == "local":
        return b"DEFAULT local\nPROMPT 0\nLABEL local\n  LOCALBOOT 0\n"
    if config.purpose == "poweroff":
        return b"DEFAULT poweroff\nPROMPT 0\nLABEL poweroff\n  COM32 poweroff.c32\n"
    return (
        f"DEFAULT {config.purpose}\nPROMPT 0\nLABEL {config.purpose}\n"
        f"  KERNEL {config.kernel}\n  INITRD {config.initrd}\n"
        f"  APPEND {config.full_cmdline(mac)}\n"
    ).encode()


def grub(config: BootConfig, mac: str | None) -> bytes:
    """A grub.cfg: one menu entry, no timeout; local boot leaves GRUB for the firmware's next
    boot entry (the disk)."""
    head = "set default=0\nset timeout=0\n"
    if config.purpose == "local":
        return (head + "menuentry 'local' {\n  exit\n}\n").encode()
    if config.purpose == "poweroff":
        return (head + "menuentry 'poweroff' {\n  halt\n}\n").encode()
    return (
        head + f"menuentry '{config.purpose}' {{\n"
        f"  linux /{config.kernel} {config.full_cmdline(mac)}\n"
        f"  initrd /{config.initrd}\n}}\n"
    ).encode()


def ipxe(config: BootConfig, mac: str | None, http_base: str) -> bytes:
    """An iPXE script fetching kernel and initrd over HTTP; local boot exits iPXE."""
    if config.purpose == "local":
        return b"#!ipxe\nexit\n"
    if config.purpose == "poweroff":
        return b"#!ipxe\npoweroff\n"
    base = http_base.rstrip("/")
    return (
        f"#!ipxe\nkernel {base}/{config.kernel} initrd=initrd {config.full_cmdline(mac)}\n"
        f"initrd --name initrd {base}/{config.initrd}\nboot\n"
    ).encode()
