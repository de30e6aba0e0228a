"""Settings of the power service (environment prefix ``METALBUS_POWER_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from metalbus.shared.settings import ServiceSettings


class PowerSettings(ServiceSettings):
    """Everything the power service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="METALBUS_POWER_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./var/power.db", description="sqlite:///path or postgresql://..."
    )
    health_port: int = Field(
        5244, ge=0, le=65535, description="port of /healthz, /readyz, /metrics"
    )
