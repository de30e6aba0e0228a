"""Settings of the compose service (environment prefix ``METALBUS_COMPOSE_``)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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
    secret_key: SecretStr | None = Field(
        None,
        description="Fernet key(s) that encrypt KVM host credentials at rest, comma-separated: "
        "the first encrypts, all decrypt (key rotation)",
    )
    secret_key_file: Path | None = Field(
        None,
        description="file holding the key when secret_key is unset (created, mode 0600, if "
        "missing); default: compose.key beside the SQLite database",
    )
    libvirt_threads: int = Field(16, ge=1, le=256, description="threads for blocking libvirt calls")
    domain_type: Literal["auto", "kvm", "qemu"] = Field(
        "auto",
        description="libvirt domain type of composed VMs: auto takes the best the host offers "
        "(kvm, then qemu, then the test driver's own)",
    )
    serial_log_dir: str = Field(
        "/var/log/libvirt/qemu",
        description="folder on the KVM host where each VM's serial console is logged",
    )
    default_disk_gb: int = Field(8, ge=1, description="size of the root disk when none is asked")
