"""Events the boot service publishes that other services consume.

The boot service decides DHCP leases locally (the hot path) and reports them here; ipam
records each lease as a DHCP address and frees it when the lease ends. The commands at the
end set what each machine network-boots.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


# -- per-machine boot configs (commands) -----------------------------------------------------

BootPurpose = Literal["enlist", "commissioning", "deploy", "local"]
"""What a machine boots: the enlistment environment (unknown machines), commissioning or
deployment (an ephemeral kernel and initrd), or its own disk."""


class BootConfigSet(BaseModel):
    """What ``mac`` boots from now on (pxelinux, GRUB and iPXE are rendered from it).

    Kernel and initrd are paths under the boot-resources root; commissioning and deploy
    need both, local boot needs neither, enlist falls back to the service's settings.
    """

    model_config = ConfigDict(extra="forbid")

    mac: MacAddress
    purpose: BootPurpose
    kernel: str = Field("", max_length=255, pattern=r"^[A-Za-z0-9._/+-]*$")
    initrd: str = Field("", max_length=255, pattern=r"^[A-Za-z0-9._/+-]*$")
    cmdline: str = Field("", max_length=1024, pattern=r"^[^\x00-\x1f\x7f]*$")

    @model_validator(mode="after")
    def _kernel_for_ephemeral(self) -> BootConfigSet:
        if self.purpose in ("commissioning", "deploy") and not (self.kernel and self.initrd):
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
