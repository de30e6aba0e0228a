"""Settings of the discovery service (environment prefix ``METALBUS_DISCOVERY_``)."""

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from metalbus.shared.settings import ServiceSettings

OUI_FILES = [
    "/usr/share/ieee-data/oui.csv",
    "/usr/share/ieee-data/mam.csv",
    "/usr/share/ieee-data/oui36.csv",
]


class DiscoverySettings(ServiceSettings):
    """Everything the discovery service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="METALBUS_DISCOVERY_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./var/discovery.db", description="sqlite:///path or postgresql://..."
    )
    health_port: int = Field(
        5245, ge=0, le=65535, description="port of /healthz, /readyz, /metrics"
    )
    interfaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="network interfaces to listen on (ARP, NDP), comma-separated",
    )
    refresh_interval_s: float = Field(
        300.0, ge=0, description="at most one neighbour.refreshed per neighbour in this time"
    )
    flush_interval_s: float = Field(
        0.5, gt=0, description="how often observations are written to the database"
    )
    flush_batch: int = Field(500, ge=1, description="most neighbours written per transaction")
    scan_rate_pps: float = Field(
        200.0, gt=0, le=100000, description="scan requests (ARP or ICMP echo) per second"
    )
    scan_max_addresses: int = Field(1024, ge=1, description="a scan of a larger subnet is refused")
    scan_reply_wait_s: float = Field(
        1.0, ge=0, description="how long a scan waits for answers after its last request"
    )
    active_scan_interval_s: float = Field(
        0.0,
        ge=0,
        description="how often ipam's active_discovery subnets are scanned (0: never)",
    )
    dhcp_known_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="server identifiers of metalbus's own DHCP servers, comma-separated",
    )
    dhcp_probe_interval_s: float = Field(
        0.0, ge=0, description="how often listened interfaces are probed for DHCP (0: never)"
    )
    dhcp_probe_wait_s: float = Field(2.0, gt=0, description="how long a probe collects OFFERs")
    dhcp_client_port: int = Field(68, ge=1, le=65535, description="UDP port probes listen on")
    dhcp_server_port: int = Field(67, ge=1, le=65535, description="UDP port probes go to")
    oui_files: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(OUI_FILES),
        description="IEEE registry CSV files the MAC vendors come from, comma-separated",
    )

    @field_validator("interfaces", "oui_files", "dhcp_known_servers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
