"""Which network boot program a PXE client gets, from its architecture (option 93, RFC 4578)
and its user class (iPXE), and the options that say so.

The boot method names are MAAS's, so a subnet's ``disabled_boot_architectures`` uses the
names operators already know.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import Opt, Packet


@dataclass(frozen=True)
class BootMethod:
    """How one kind of client boots: its MAAS name, the file, and whether over HTTP."""

    name: str
    bootfile: str
    http: bool = False


BIOS = BootMethod("pxe", "lpxelinux.0")
IPXE = BootMethod("ipxe", "ipxe.cfg", http=True)
BY_ARCH: dict[int, BootMethod] = {
    0: BIOS,
    7: BootMethod("uefi_amd64_tftp", "bootx64.efi"),
    9: BootMethod("uefi_ebc_tftp", "bootx64.efi"),  # EFI BC: what x86-64 firmware often sends
    11: BootMethod("uefi_arm64_tftp", "bootaa64.efi"),
    16: BootMethod("uefi_amd64_http", "bootx64.efi", http=True),
    19: BootMethod("uefi_arm64_http", "bootaa64.efi", http=True),
}
"""Option 93 values metalbus has a boot program for; other architectures get an address only."""


def is_network_boot(packet: Packet) -> bool:
    """A PXE ROM, UEFI (PXE or HTTP boot) or iPXE: it sends option 93, a PXEClient or
    HTTPClient vendor class, or the iPXE user class."""
    vendor = packet.options.get(Opt.VENDOR_CLASS, b"")
    return (
        Opt.CLIENT_ARCH in packet.options
        or vendor.startswith((b"PXEClient", b"HTTPClient"))
        or is_ipxe(packet)
    )


def is_ipxe(packet: Packet) -> bool:
    """iPXE says who it is with user class ``iPXE``: it is chained to the HTTP script."""
    return b"iPXE" in packet.user_classes


def boot_method(packet: Packet) -> BootMethod | None:
    """The boot method for a network-booting client, or None (no known program for it)."""
    if is_ipxe(packet):
        return IPXE
    arch = packet.client_arch
    if arch is None:
        # A PXE ROM without option 93 is a legacy BIOS one (RFC 4578 came later).
        return BIOS if packet.options.get(Opt.VENDOR_CLASS, b"").startswith(b"PXEClient") else None
    return BY_ARCH.get(arch)


def boot_options(
    reply: Packet, method: BootMethod, tftp_server: str, http_base: str, *, proxy: bool = False
) -> None:
    """Write next-server/siaddr, ``file`` and options 66/67 (60 for HTTP boot) into ``reply``.

    TFTP clients get the file name and the TFTP server; HTTP boot and iPXE clients get a URL
    in ``file`` and option 67, and HTTP boot clients option 60 ``HTTPClient``, without which
    UEFI firmware ignores the offer (UEFI spec 24.7).
    """
    reply.siaddr = tftp_server
    if method.http:
        url = f"{http_base.rstrip('/')}/{method.bootfile}"
        reply.file = url.encode()[:128]
        reply.options[Opt.BOOTFILE_NAME] = url.encode()
        if method is not IPXE:
            reply.options[Opt.VENDOR_CLASS] = b"HTTPClient"
    else:
        reply.file = method.bootfile.encode()
        reply.options[Opt.TFTP_SERVER_NAME] = tftp_server.encode()
        reply.options[Opt.BOOTFILE_NAME] = method.bootfile.encode()
    if proxy and not method.http:
        # PXE spec 2.1: a proxy offer names itself PXEClient and, with discovery control 8
        # in option 43, tells the ROM to take the boot file from this offer as it is.
        reply.options[Opt.VENDOR_CLASS] = b"PXEClient"
        reply.options[Opt.VENDOR_SPECIFIC] = bytes((6, 1, 8, 255))
