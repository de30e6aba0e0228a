"""Settings of the compose service (environment prefix ``METALBUS_COMPOSE_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from metalbus.shared.settings import ServiceSettings


class ComposeSettings(ServiceSettings):
    """Everything the compose service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="METALBUS_COMPOSE_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./var/compose.db", description="sqlite:///path or postgresql://..."
    )
    health_port: int = Field(
        5242, ge=0, le=65535, description="port of /healthz, /readyz, /metrics"
    )
