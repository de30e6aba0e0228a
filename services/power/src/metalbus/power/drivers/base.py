"""The power driver interface, in the spirit of Ironic's ``PowerInterface``.

A power cycle is not a driver method: the service does off, confirmed, then on, confirmed,
the same way for every driver.

A driver is a class with a pydantic settings model (its JSON schema is what operators fill
in; ``SecretStr`` fields are the secrets) and a handful of async methods. One instance talks
to one BMC for one action or one query, then is closed. Every method raises only:

- :class:`TransientError`: the BMC did not answer, or answered "busy": worth retrying;
- :class:`FatalError`: it never will work as configured (bad credentials, no such domain,
  an operation the BMC does not support): retrying cannot help.

Blocking libraries (pyghmi, libvirt) run in the executor the driver is given, never on the
event loop.
"""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from concurrent.futures import Executor
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from metalbus.shared.contract.power import BootDevice, BootMode, DriverInfo, DriverName, PowerState
from metalbus.shared.errors import ValidationFailed


class DriverError(Exception):
    """A BMC operation failed. ``field`` names the setting at fault, when one is."""

    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class TransientError(DriverError):
    """The BMC did not answer or was busy: try again later."""

    transient = True


class FatalError(DriverError):
    """The BMC refused for good (credentials, configuration, unsupported)."""


class DriverSettingsModel(BaseModel):
    """Base of every driver's settings: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


SettingsT = TypeVar("SettingsT", bound=DriverSettingsModel)


class PowerDriver(ABC, Generic[SettingsT]):
    """One BMC, reached one way."""

    name: ClassVar[DriverName]
    description: ClassVar[str]
    settings_model: ClassVar[type[DriverSettingsModel]]
    can_query: ClassVar[bool] = True
    soft_off: ClassVar[bool] = True
    boot_device: ClassVar[bool] = True

    def __init__(self, settings: SettingsT, executor: Executor) -> None:
        self.settings = settings
        self.executor = executor

    # -- settings -------------------------------------------------------------------------

    @classmethod
    def validate(cls, settings: dict[str, Any]) -> DriverSettingsModel:
        """Check settings against the driver's model.

        Raises:
            ValidationFailed: with ``field`` = ``settings.<key>`` of the first problem.
        """
        try:
            return cls.settings_model.model_validate(settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValidationFailed(
                f"{cls.name.value} settings: {where or 'settings'}: {first['msg']}",
                field=f"settings.{where}" if where else "settings",
            ) from None

    @classmethod
    def secret_fields(cls) -> list[str]:
        """The settings that are secrets (stored sealed, never shown)."""
        return sorted(
            name for name, f in cls.settings_model.model_fields.items() if _is_secret(f.annotation)
        )

    @classmethod
    def host_of(cls, settings: DriverSettingsModel) -> str | None:
        """The BMC's host, for per-host limits; None when the driver reaches no host."""
        return None

    @classmethod
    def info(cls) -> DriverInfo:
        """What ``driver_list`` says of this driver."""
        schema = cls.settings_model.model_json_schema()
        return DriverInfo(
            name=cls.name,
            description=cls.description,
            settings_schema=schema,
            secret_fields=cls.secret_fields(),
            can_query=cls.can_query,
            soft_off=cls.soft_off,
            boot_device=cls.boot_device,
        )

    @classmethod
    async def release_idle(cls, executor: Executor, idle_s: float) -> int:
        """Let go of what the driver keeps between calls (sessions) and nobody used for
        ``idle_s``; how many it let go. Most drivers keep nothing."""
        return 0

    def can_soft_off(self) -> bool:
        """Whether this BMC, as configured, can power off softly."""
        return self.soft_off

    # -- the BMC --------------------------------------------------------------------------

    @abstractmethod
    async def power_on(self) -> None:
        """Ask for power on. Raises TransientError, FatalError."""

    @abstractmethod
    async def power_off(self, soft: bool) -> None:
        """Ask for power off, at once or (``soft``) through the OS. Raises as power_on."""

    @abstractmethod
    async def query(self) -> PowerState:
        """The power state the BMC reports. Raises as power_on."""

    @abstractmethod
    async def set_boot_device(self, device: BootDevice, persistent: bool, mode: BootMode) -> None:
        """Set the next (or every, if ``persistent``) boot device. Raises as power_on."""

    async def close(self) -> None:  # optional hook: most drivers hold nothing
        """Let go of whatever the driver holds."""


def _is_secret(annotation: Any) -> bool:
    """SecretStr, also inside ``Annotated[...]`` and ``... | None``."""
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in typing.get_args(annotation))


def secret_values(settings: DriverSettingsModel, secret_names: list[str]) -> dict[str, Any]:
    """The secret settings in clear (for sealing), unset ones left out."""
    out: dict[str, Any] = {}
    for name in secret_names:
        value = getattr(settings, name)
        if value is not None:
            out[name] = value.get_secret_value()
    return out
