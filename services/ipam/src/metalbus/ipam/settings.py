"""Settings of the ipam service (environment prefix ``METALBUS_IPAM_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from metalbus.shared.settings import ServiceSettings


class IpamSettings(ServiceSettings):
    """Everything the ipam service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="METALBUS_IPAM_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./var/ipam.db", description="sqlite:///path or postgresql://..."
    )
    health_port: int = Field(
        5241, ge=0, le=65535, description="port of /healthz, /readyz, /metrics"
    )
    low_free_threshold: float = Field(
        10.0,
        ge=0,
        le=100,
        description="percent of free addresses under which a subnet publishes "
        "subnet.low_on_addresses (a subnet may set its own)",
    )
    lease_sweep_s: float = Field(
        30.0, gt=0, description="how often DHCP addresses whose lease ended are freed"
    )
    idempotency_ttl_h: float = Field(
        24.0, gt=0, description="how long a request's idempotency key is remembered"
    )
    exhausted_event_interval_s: float = Field(
        10.0,
        ge=0,
        description="at most one subnet.exhausted event per subnet in this many seconds "
        "(per replica), however many allocations fail",
    )
