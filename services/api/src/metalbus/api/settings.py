"""Settings of the api service (environment prefix ``METALBUS_API_``)."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from metalbus.shared.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    """Everything the api service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="METALBUS_API_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./var/api.db", description="sqlite:///path or postgresql://..."
    )
    host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(5240, ge=0, le=65535, description="port of the HTTP API (and its health)")
    admin_token_file: Path | None = Field(
        None,
        description="where the first admin token is written (mode 0600) instead of stdout",
    )
    bootstrap_token: SecretStr | None = Field(
        None,
        description="an admin token to install when none exists (from a secret, in clusters)",
    )
    token_cache_s: float = Field(
        5.0, ge=0, description="how long a checked token is trusted without a database read"
    )
    sse_heartbeat_s: float = Field(
        15.0, gt=0, description="keep-alive comment interval on /events/stream"
    )
    sse_queue: int = Field(
        1000, ge=1, description="events buffered per stream client before it is cut off"
    )
