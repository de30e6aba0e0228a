"""Secrets at rest (BMC passwords, KVM host credentials): Fernet with keys from the settings.

Fernet is AES-128-CBC with an HMAC-SHA256. The first key encrypts; every key decrypts, so a
key is rotated by putting the new one first and keeping the old one until every row has
been written again. Without a key in the settings a service keeps one in a file (mode
0600) beside its SQLite database, which is what the embedded ``metalbus up`` wants; with
PostgreSQL a key must be given, or every replica would invent its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from .errors import InternalError


class KeySettings(Protocol):
    """The settings a service with secrets has (``METALBUS_<SERVICE>_SECRET_KEY``...)."""

    secret_key: SecretStr | None
    secret_key_file: Path | None
    database_url: str


class SecretBox:
    """Encrypts and decrypts a dict of secrets as one token."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def seal(self, secrets: dict[str, Any]) -> str:
        """The encrypted form of ``secrets`` (empty dict: empty string)."""
        if not secrets:
            return ""
        return self._fernet.encrypt(json.dumps(secrets).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        """The secrets back. Raises InternalError when no key opens them (wrong key)."""
        if not token:
            return {}
        try:
            data: dict[str, Any] = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise InternalError(
                "stored secrets cannot be decrypted with the configured key(s)"
            ) from None
        return data


def load_keys(settings: KeySettings, service: str) -> list[bytes]:
    """The keys from ``secret_key``, else from the key file (made if missing).

    Raises:
        ValueError: a key is malformed, or no key is configured on a non-SQLite database.
    """
    variable = f"METALBUS_{service.upper()}_SECRET_KEY"
    if settings.secret_key is not None:
        keys = [k.strip().encode() for k in settings.secret_key.get_secret_value().split(",")]
        keys = [k for k in keys if k]
    else:
        keys = [_key_file(settings, service, variable).read_bytes().strip()]
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            raise ValueError(f"{variable} must be Fernet keys (32 url-safe base64 bytes)") from None
    return keys


def _key_file(settings: KeySettings, service: str, variable: str) -> Path:
    path = settings.secret_key_file
    if path is None:
        url = make_url(settings.database_url)
        if not url.get_backend_name().startswith("sqlite") or not url.database:
            raise ValueError(
                f"set {variable} (or {variable}_FILE): with a shared database every replica "
                "must encrypt with the same key"
            )
        path = Path(url.database).parent / f"{service}.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path  # another replica made it first
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key() + b"\n")
    return path
