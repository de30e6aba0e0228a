"""Settings common to every service (pydantic-settings, one env prefix per service).

A service subclasses :class:`ServiceSettings` and sets its own prefix, e.g.
``METALBUS_IPAM_``; so ``METALBUS_IPAM_NATS_URL`` configures the ipam service only.
Settings are built in ``main()`` (or the app's lifespan) and passed down, never at import.
"""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_instance_id() -> str:
    """host-pid: unique per process, readable in logs and ``$SRV.INFO``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ServiceSettings(BaseSettings):
    """What every service needs to run; subclasses add their own fields and prefix."""

    model_config = SettingsConfigDict(env_prefix="METALBUS_", extra="ignore")

    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server URL(s), comma-separated for a cluster",
    )
    nats_user: str | None = Field(None, description="NATS user name")
    nats_password: SecretStr | None = Field(None, description="NATS password (secret)")
    nats_creds_file: str | None = Field(None, description="NATS .creds file (JWT + nkey)")
    nats_tls_ca_file: str | None = Field(
        None, description="CA (PEM) that signed the NATS server's certificate: connect with TLS"
    )
    nats_tls_cert_file: str | None = Field(
        None, description="client certificate (PEM) for NATS servers that verify clients"
    )
    nats_tls_key_file: str | None = Field(None, description="private key of nats_tls_cert_file")
    database_url: str = Field(
        "sqlite:///./var/metalbus.db",
        description="sqlite:///path or postgresql://user@host/db",
    )
    database_schema: str | None = Field(
        None, description="PostgreSQL schema for this service's tables (one schema per service)"
    )
    http_tls_cert_file: str | None = Field(
        None, description="certificate (PEM) to serve this service's HTTP over TLS"
    )
    http_tls_key_file: str | None = Field(None, description="private key of http_tls_cert_file")
    health_host: str = "127.0.0.1"
    health_port: int = Field(8080, ge=0, le=65535)
    instance_id: str = Field(default_factory=default_instance_id)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    max_inflight_requests: int = Field(
        64, ge=1, description="requests one replica handles at once per endpoint"
    )
    stream_replicas: int = Field(1, ge=1, le=5, description="JetStream replicas of the stream")
    stream_max_age_days: float = Field(7.0, gt=0)
    stream_duplicate_window_s: float = Field(
        120.0, gt=0, description="how long JetStream remembers event ids to drop re-sends"
    )
    outbox_batch: int = Field(200, ge=1)
    outbox_poll_s: float = Field(1.0, gt=0)
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint when otel_exporter=otlp"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ServiceSettings:
        if bool(self.http_tls_cert_file) != bool(self.http_tls_key_file):
            raise ValueError("http_tls_cert_file and http_tls_key_file go together")
        return self

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("database_url must be sqlite:///... or postgresql://...")
        return value
