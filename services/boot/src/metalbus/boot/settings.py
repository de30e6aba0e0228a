"""Settings of the boot service (environment prefix ``METALBUS_BOOT_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

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
