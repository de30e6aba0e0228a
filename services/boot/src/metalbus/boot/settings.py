"""Settings of the boot service (environment prefix ``METALBUS_BOOT_``)."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyAddress, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from metalbus.shared.settings import ServiceSettings


class BootSettings(ServiceSettings):
    """Everything the boot service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="METALBUS_BOOT_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./var/boot.db", description="sqlite:///path or postgresql://..."
    )
    health_port: int = Field(
        5243, ge=0, le=65535, description="port of /healthz, /readyz, /metrics"
    )
    dhcp_interfaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="network interfaces DHCP listens on, comma-separated (empty: no DHCP)",
    )
    dhcp_mode: Literal["full", "proxy"] = Field(
        "full", description="full: leases and boot options; proxy: boot options only"
    )
    dhcp_port: int = Field(67, ge=1, le=65535, description="UDP port of the DHCP server")
    dhcp_client_port: int = Field(68, ge=1, le=65535, description="UDP port replies go to")
    dhcp_pxe_port: int = Field(
        4011,
        ge=0,
        le=65535,
        description="PXE boot server discovery port answered in proxy mode (0: not served)",
    )
    lease_time_s: int = Field(3600, ge=10, description="lease time of ordinary clients")
    pxe_lease_time_s: int = Field(300, ge=10, description="lease time of network-booting clients")
    offer_hold_s: float = Field(30.0, gt=0, description="how long an offered address is kept")
    decline_hold_s: float = Field(600.0, gt=0, description="how long a declined address rests")
    lease_sweep_s: float = Field(5.0, gt=0, description="how often expired leases are ended")
    tftp_server: IPvAnyAddress | None = Field(
        None, description="next-server for TFTP boot (unset: the address of the interface)"
    )
    http_boot_url: str = Field(
        "http://{server}:5248/boot",
        description="base URL of HTTP boot and iPXE scripts; {server} is the interface address",
    )
    unknown_mac_interval_s: float = Field(
        60.0, ge=0, description="at most one pxe.unknown_mac event per MAC in this time"
    )
    events_per_s: float = Field(
        20.0,
        gt=0,
        description="at most this many pxe.unknown_mac, and as many TFTP, events a second",
    )

    tftp_address: IPvAnyAddress | None = Field(
        None, description="address the TFTP server listens on (unset: no TFTP), e.g. 0.0.0.0"
    )
    tftp_port: int = Field(69, ge=0, le=65535, description="UDP port of TFTP requests")
    tftp_timeout_s: float = Field(
        1.0, gt=0, le=255, description="retransmission timeout when the client asks for none"
    )
    tftp_max_retries: int = Field(5, ge=0, description="retransmissions before giving up")
    tftp_max_blksize: int = Field(65464, ge=512, le=65464, description="largest block size")
    tftp_max_windowsize: int = Field(64, ge=1, le=65535, description="largest window size")
    tftp_event_interval_s: float = Field(
        60.0, ge=0, description="at most one TFTP event per client, file and outcome in this time"
    )
    http_boot_address: IPvAnyAddress | None = Field(
        None, description="address HTTP boot listens on (unset: no HTTP boot), e.g. 0.0.0.0"
    )
    http_boot_port: int = Field(
        5248, ge=0, le=65535, description="TCP port of HTTP boot (see http_boot_url)"
    )
    boot_resources_dir: Path = Field(
        Path("./var/boot-resources"),
        description="root of the files TFTP and HTTP boot serve (boot loaders, kernels)",
    )
    enlist_kernel: str = Field(
        "ephemeral/amd64/vmlinuz", description="kernel of unknown machines (under the root)"
    )
    enlist_initrd: str = Field(
        "ephemeral/amd64/initrd.img", description="initrd of unknown machines (under the root)"
    )
    enlist_cmdline: str = Field(
        "console=ttyS0 ip=dhcp", description="kernel command line of unknown machines"
    )

    @field_validator("dhcp_interfaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
