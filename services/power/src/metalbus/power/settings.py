"""Settings of the power service (environment prefix ``METALBUS_POWER_``)."""

from pathlib import Path

from pydantic import Field, SecretStr
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
    secret_key: SecretStr | None = Field(
        None,
        description="Fernet key(s) that encrypt BMC secrets at rest, comma-separated: the "
        "first encrypts, all decrypt (key rotation)",
    )
    secret_key_file: Path | None = Field(
        None,
        description="file holding the key when secret_key is unset (created, mode 0600, if "
        "missing); default: power.key beside the SQLite database",
    )
    poll_enabled: bool = Field(True, description="poll BMCs in this replica")
    poll_interval_s: float = Field(60.0, gt=0, description="time between polling sweeps")
    poll_jitter_s: float = Field(
        5.0, ge=0, description="each BMC's query starts at a random offset up to this"
    )
    poll_concurrency: int = Field(64, ge=1, le=1024, description="BMC queries at once, overall")
    poll_per_host: int = Field(2, ge=1, description="BMC queries at once per BMC host")
    query_timeout_s: float = Field(
        10.0, gt=0, description="one query of one BMC (login included) may take this long"
    )
    breaker_threshold: int = Field(
        3, ge=1, description="failed queries in a row that make a BMC unreachable"
    )
    breaker_max_backoff_s: float = Field(
        900.0, gt=0, description="longest pause between queries of an unreachable BMC"
    )
    action_retries: int = Field(
        3, ge=0, description="retries of a transient BMC failure during a power action"
    )
    action_backoff_s: float = Field(0.5, ge=0, description="first retry pause (then doubled)")
    confirm_timeout_s: float = Field(
        30.0, gt=0, description="how long an action waits for the BMC to confirm the new state"
    )
    soft_off_timeout_s: float = Field(
        120.0, gt=0, description="how long a soft power off waits for the OS to shut down"
    )
    session_idle_s: float = Field(
        300.0,
        gt=0,
        description="a BMC session (IPMI) no query or action used this long is logged out "
        "(BMCs have few session slots); while polling, at least two polling intervals",
    )
    driver_threads: int = Field(
        64, ge=1, description="threads for blocking drivers (pyghmi, libvirt)"
    )
