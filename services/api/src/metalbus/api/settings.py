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
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="largest request body accepted; larger ones get 413"
    )
    # -- webhooks (docs/webhooks.md) -------------------------------------------------------
    secret_key: SecretStr | None = Field(
        None,
        description="Fernet key(s) that encrypt webhook signing secrets at rest, "
        "comma-separated: the first encrypts, all decrypt (key rotation)",
    )
    secret_key_file: Path | None = Field(
        None,
        description="file holding the key when secret_key is unset (created, mode 0600, if "
        "missing); default: api.key beside the SQLite database",
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=300, description="how long one webhook attempt may take"
    )
    webhook_concurrency: int = Field(
        32, ge=1, le=1024, description="webhook attempts in flight at once per replica"
    )
    webhook_per_subscription: int = Field(
        4, ge=1, le=1024, description="of those, at most this many to one subscription"
    )
    webhook_max_attempts: int = Field(
        12, ge=1, le=100, description="attempts before a delivery is marked failed"
    )
    webhook_max_age_s: float = Field(
        86400.0, gt=0, description="a delivery not through after this long is marked failed"
    )
    webhook_backoff_s: float = Field(5.0, gt=0, description="delay before the first retry")
    webhook_backoff_max_s: float = Field(
        3600.0, gt=0, description="longest delay between two retries"
    )
    webhook_keep_days: float = Field(
        30.0, gt=0, description="finished deliveries and their attempts are kept this long"
    )
    webhook_poll_s: float = Field(
        1.0, gt=0, description="how often due retries are looked for when nothing wakes the sender"
    )
    # -- machines (docs/machines.md) ------------------------------------------------------
    flows_enabled: bool = Field(
        True,
        description="drive machine flows and time stuck machines out here "
        "(run them on one replica)",
    )
    flow_poll_s: float = Field(
        2.0, gt=0, description="how often pending flow steps are looked for without a wake-up"
    )
    flow_concurrency: int = Field(16, ge=1, description="machines whose steps run at once")
    flow_retry_s: float = Field(
        1.0, gt=0, description="first back-off after a step failed for a passing reason"
    )
    flow_retry_max_s: float = Field(60.0, gt=0, description="longest back-off between retries")
    timeout_sweep_s: float = Field(
        10.0, gt=0, description="how often stuck machines are looked for"
    )
    commissioning_timeout_s: float = Field(
        1800.0, gt=0, description="Commissioning longer than this becomes Failed commissioning"
    )
    deploying_timeout_s: float = Field(
        3600.0, gt=0, description="Deploying longer than this becomes Failed deployment"
    )
    releasing_timeout_s: float = Field(
        900.0, gt=0, description="Releasing longer than this becomes Failed releasing"
    )
    testing_timeout_s: float = Field(
        1800.0, gt=0, description="Testing longer than this becomes Broken"
    )
    callback_url: str = Field(
        "http://127.0.0.1:5240",
        description="the api's URL as machines' boot environments reach it (put in their "
        "kernel command line with a per-machine token)",
    )
    ephemeral_kernel: str = Field(
        "ephemeral/amd64/vmlinuz",
        description="kernel (under boot's resources root) that commissioning, testing, "
        "rescue mode and deployment boot",
    )
    ephemeral_initrd: str = Field(
        "ephemeral/amd64/initrd.img", description="initrd that goes with ephemeral_kernel"
    )
    boot_cmdline: str = Field(
        "console=ttyS0,115200", description="kernel arguments before metalbus's own"
    )
    kvm_host_uri: str = Field(
        "qemu+ssh://ubuntu@{ip}/system",
        description="libvirt URI a machine deployed as a KVM host is added to compose with "
        "({ip}: its first address, {hostname}: its host name)",
    )
