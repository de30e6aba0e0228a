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
