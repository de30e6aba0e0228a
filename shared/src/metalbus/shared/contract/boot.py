"""Events the boot service publishes that other services consume.

The boot service decides DHCP leases locally (the hot path) and reports them here; ipam
records each lease as a DHCP address and frees it when the lease ends. The commands at the
end set what each machine network-boots.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..commands import Command
from ..events import EventPayload, event
from .ipam import IPAddressText, MacAddress


@event("boot", "lease", "committed")
class LeaseCommitted(EventPayload):
    """A client holds (or renewed) a lease on ``ip`` until ``expires_at``."""

    ip: IPAddressText
    mac: MacAddress
    expires_at: datetime
    hostname: str | None = Field(None, max_length=253)
    client_id: str | None = Field(None, max_length=255)


@event("boot", "lease", "ended")
class LeaseEnded(EventPayload):
    """A lease is over: the client released or declined it, or it expired."""

    ip: IPAddressText
    mac: MacAddress
    reason: Literal["released", "declined", "expired"]


@event("boot", "pxe", "unknown_mac")
class PxeUnknownMac(EventPayload):
    """A network-booting MAC without a host reservation asked for DHCP.

    A machine metalbus does not know yet (discovery and enlistment start from this).
    Published at most once per MAC per ``METALBUS_BOOT_UNKNOWN_MAC_INTERVAL_S``.
    """

    mac: MacAddress
    arch: int | None = Field(None, description="client architecture (DHCP option 93)")
    boot_method: str | None = Field(
        None, description="pxe, uefi_amd64_tftp, uefi_amd64_http, ipxe... (null: none known)"
    )
    vlan_id: int | None = None
    subnet_id: int | None = None
    relay_ip: IPAddressText | None = Field(None, description="giaddr, when relayed")
    client_uuid: str | None = Field(None, max_length=64, description="option 97, hex")
    vendor_class: str | None = Field(None, max_length=255, description="option 60")


BootPurpose = Literal["enlist", "commissioning", "deploy", "local", "poweroff", "rescue"]
"""What a machine boots: the enlistment environment (unknown machines), commissioning,
deployment or rescue (an ephemeral kernel and initrd), its own disk, or nothing: the boot
loader powers it off."""

# -- TFTP transfers (throttled: at most one per client, file and kind per
# METALBUS_BOOT_TFTP_EVENT_INTERVAL_S, and METALBUS_BOOT_EVENTS_PER_S in all) -------------

TftpFileName = Annotated[
    str, Field(max_length=255, description="the name the client asked for (cut at 255)")
]

BootFileKind = Literal["loader", "config", "kernel", "initrd"]
"""What a boot file is to the machine fetching it: the boot loader DHCP named, a boot config
(pxelinux, GRUB, iPXE script), or the kernel or initrd its config names."""


class BootClient(EventPayload):
    """Who fetched a file, when the boot service knows: ``mac`` from the DHCP lease of
    ``client_ip`` (or from a per-machine file name), ``purpose`` from the config set for
    that MAC, ``file_kind`` from the file's name and that config. All optional: a client
    with no lease here (another DHCP server, proxy DHCP) has no MAC."""

    mac: MacAddress | None = None
    purpose: BootPurpose | None = Field(None, description="null: no config set for the MAC")
    file_kind: BootFileKind | None = Field(None, description="null: not a boot file")


@event("boot", "tftp", "completed")
class TftpTransferCompleted(BootClient):
    """A client fetched a whole file (or generated config) over TFTP."""

    filename: TftpFileName
    client_ip: IPAddressText
    size: int = Field(ge=0, description="bytes sent")
    seconds: float = Field(ge=0)
    blksize: int
    windowsize: int


@event("boot", "tftp", "failed")
class TftpTransferFailed(BootClient):
    """A transfer ended before the file was sent: the client went silent (``timeout``),
    sent an ERROR (``aborted``; PXE ROMs do so after reading ``tsize``) or the file could
    not be read (``failed``)."""

    filename: TftpFileName
    client_ip: IPAddressText
    reason: Literal["timeout", "aborted", "failed"]
    acknowledged_bytes: int = Field(ge=0, description="bytes the client acknowledged")
    size: int = Field(ge=0, description="the file's size")


@event("boot", "tftp", "file_not_found")
class TftpFileNotFound(BootClient):
    """A client asked for a file that is neither generated nor under the boot root."""

    filename: TftpFileName
    client_ip: IPAddressText


@event("boot", "http", "served")
class HttpBootFileServed(BootClient):
    """HTTP boot served a boot file (loader, config, kernel or initrd; other files make no
    event), throttled with the TFTP events (one per client, file and kind per
    ``METALBUS_BOOT_TFTP_EVENT_INTERVAL_S``, ``METALBUS_BOOT_EVENTS_PER_S`` in all)."""

    filename: TftpFileName
    client_ip: IPAddressText
    size: int = Field(ge=0, description="bytes of the whole file")
    file_kind: BootFileKind


# -- per-machine boot configs (commands) -----------------------------------------------------

EPHEMERAL_PURPOSES = frozenset({"commissioning", "deploy", "rescue"})
"""Purposes that boot a kernel and an initrd given with the config."""

_NOT_IDENTITIES = frozenset({uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1)})


def _machine_uuid(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise ValueError("not a UUID") from None
    if parsed in _NOT_IDENTITIES:  # firmware without a real one sends all 0s or all 1s
        raise ValueError("all zeros or all ones is no machine's UUID")
    return str(parsed)


MachineUuid = Annotated[str, AfterValidator(_machine_uuid)]
"""A machine's SMBIOS UUID (what PXE sends as DHCP option 97), lower case with dashes."""


class BootConfigSet(BaseModel):
    """What ``mac`` boots from now on (pxelinux, GRUB and iPXE are rendered from it).

    Kernel and initrd are paths under the boot-resources root; commissioning, deploy and
    rescue need both, local boot and poweroff need neither, enlist falls back to the
    service's settings. With ``uuid`` the config is also served under the machine's UUID
    (``pxelinux.cfg/<uuid>``, ``grub/grub.cfg-<uuid>``, ``ipxe.cfg-<uuid>``).
    """

    model_config = ConfigDict(extra="forbid")

    mac: MacAddress
    purpose: BootPurpose
    kernel: str = Field("", max_length=255, pattern=r"^[A-Za-z0-9._/+-]*$")
    initrd: str = Field("", max_length=255, pattern=r"^[A-Za-z0-9._/+-]*$")
    cmdline: str = Field("", max_length=1024, pattern=r"^[^\x00-\x1f\x7f]*$")
    uuid: MachineUuid | None = None

    @model_validator(mode="after")
    def _kernel_for_ephemeral(self) -> BootConfigSet:
        if self.purpose in EPHEMERAL_PURPOSES and not (self.kernel and self.initrd):
            raise ValueError(f"{self.purpose} needs a kernel and an initrd")
        return self


class BootConfigRequest(BaseModel):
    """One machine, by MAC."""

    model_config = ConfigDict(extra="forbid")

    mac: MacAddress


class BootConfigInfo(BaseModel):
    """What ``mac`` boots; ``is_default``: nothing was set, so it enlists."""

    mac: MacAddress
    purpose: BootPurpose
    kernel: str
    initrd: str
    cmdline: str
    uuid: str | None = None
    is_default: bool


BOOT_CONFIG_SET = Command(
    "boot", "config_set", BootConfigSet, BootConfigInfo, description="Set what a machine boots"
)
BOOT_CONFIG_GET = Command(
    "boot", "config_get", BootConfigRequest, BootConfigInfo, description="What a machine boots"
)
BOOT_CONFIG_CLEAR = Command(
    "boot",
    "config_clear",
    BootConfigRequest,
    BootConfigInfo,
    description="Forget a machine's boot config: it enlists again",
)
