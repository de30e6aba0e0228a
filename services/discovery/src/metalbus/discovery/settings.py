"""Settings of the discovery service (environment prefix ``METALBUS_DISCOVERY_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from metalbus.shared.settings import ServiceSettings


class DiscoverySettings(ServiceSettings):
    """Everything the discovery service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="METALBUS_DISCOVERY_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./var/discovery.db", description="sqlite:///path or postgresql://..."
    )
    health_port: int = Field(
        5245, ge=0, le=65535, description="port of /healthz, /readyz, /metrics"
    )
