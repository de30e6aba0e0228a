"""The power service's wire contract: BMCs, power actions, drivers, and their events.

A **BMC** is how metalbus reaches one machine's power: a driver (``ipmi``, ``redfish``,
``virsh``, ``webhook``, ``manual``) and that driver's settings. Each driver publishes its
settings as a JSON schema (``driver_list``); secret settings (passwords, K_g, tokens) are
``writeOnly`` there, are stored encrypted, and never come back: a :class:`Bmc` lists only
the *names* of the secrets that are set.

Power actions are safe by construction, as MAAS operators asked for years:

- ``power_on`` of a machine that is already on changes nothing (it is never cycled);
- a boot override (PXE or disk) is set before powering on;
- transient BMC failures are retried with back-off, and every action ends by querying the
  BMC until it confirms the new state.

The service polls every BMC with ``poll`` set and reports what it learns as events: a power
state change, a BMC that stopped answering (after a few failed queries in a row), and its
recovery.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..commands import Command, Empty
from ..events import EventPayload, event
from .ipam import ById, Name, Page, PageRequest, Stamped, UpdateRequest

SERVICE = "power"


class PowerState(StrEnum):
    """What the BMC says (``unknown``: never asked, or a driver that cannot tell)."""

    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


class DriverName(StrEnum):
    """The ways metalbus reaches a BMC."""

    IPMI = "ipmi"
    REDFISH = "redfish"
    VIRSH = "virsh"
    WEBHOOK = "webhook"
    MANUAL = "manual"


class PowerAction(StrEnum):
    """What may be asked of a BMC."""

    ON = "on"
    OFF = "off"
    SOFT_OFF = "soft_off"
    CYCLE = "cycle"
    QUERY = "query"
    SET_BOOT_DEVICE = "set_boot_device"


class BootDevice(StrEnum):
    """Where the machine boots next."""

    PXE = "pxe"
    DISK = "disk"


class BootMode(StrEnum):
    """Firmware boot mode of a boot override."""

    LEGACY = "legacy"
    EFI = "efi"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


MachineId = Annotated[str, Field(min_length=1, max_length=64)]
DriverSettings = Annotated[
    dict[str, Any],
    Field(
        description="the driver's settings, as its schema in `driver_list` describes "
        "(secrets included here only on the way in)"
    ),
]


# -- BMCs ---------------------------------------------------------------------------------


class BmcCreate(_Input):
    """A new BMC; its settings are checked against the driver's schema."""

    name: Name
    driver: DriverName
    settings: DriverSettings = Field(default_factory=dict)
    machine_id: MachineId | None = Field(None, description="the api's machine this BMC powers")
    poll: bool = Field(True, description="query its power state on every polling sweep")


class BmcUpdate(_Input):
    """Changes to a BMC. ``settings`` replaces the keys it names and keeps the others
    (so a secret need not be sent again); a key set to null goes back to its default."""

    name: Name | None = None
    settings: DriverSettings | None = None
    machine_id: MachineId | None = None
    poll: bool | None = None


class Bmc(Stamped):
    """A BMC as the service shows it: never its secrets, only which ones are set."""

    name: str
    driver: DriverName
    settings: dict[str, Any] = Field(description="the driver's settings without the secrets")
    secrets_set: list[str] = Field(description="names of the secret settings that have a value")
    host: str | None = Field(description="the BMC's host (polling limits queries per host)")
    machine_id: str | None
    poll: bool
    power_state: PowerState
    power_state_at: datetime | None = Field(
        description="when the state was last recorded (a change, or an action confirming it)"
    )
    reachable: bool = Field(description="false after repeated failed queries, until one works")
    last_error: str | None


class BmcQuery(PageRequest):
    """BMCs, optionally by driver, machine or power state."""

    driver: DriverName | None = None
    machine_id: MachineId | None = None
    power_state: PowerState | None = None


# -- power actions ------------------------------------------------------------------------


class BootOverride(_Input):
    """The device the machine boots from next (or always, when ``persistent``)."""

    device: BootDevice
    persistent: bool = False
    mode: BootMode = BootMode.LEGACY


class PowerOnRequest(ById):
    """Power a machine on; with ``boot``, set the boot device first. A machine that is
    already on is left alone (its boot device is still set, for its next boot)."""

    boot: BootOverride | None = None


class PowerOffRequest(ById):
    """Power a machine off: at once, or with ``soft`` by asking the OS to shut down."""

    soft: bool = False


class SetBootDeviceRequest(ById):
    """Set the next boot device without touching the power."""

    boot: BootOverride


class PowerResult(BaseModel):
    """What an action did, as the BMC confirmed it."""

    bmc_id: int
    action: PowerAction
    power_state: PowerState
    changed: bool = Field(description="whether the power state changed")
    attempts: int = Field(description="driver calls made, retries included")


class DriverInfo(BaseModel):
    """A driver and the JSON schema of its settings (secrets are ``writeOnly``)."""

    name: DriverName
    description: str
    settings_schema: dict[str, Any]
    secret_fields: list[str]
    can_query: bool = Field(description="false when the driver cannot tell the power state")
    soft_off: bool
    boot_device: bool


class DriverList(BaseModel):
    """Every driver the power service has."""

    drivers: list[DriverInfo]


# -- commands -----------------------------------------------------------------------------


BMC_CREATE = Command(SERVICE, "bmc_create", BmcCreate, Bmc, 10.0, "Add a BMC")
BMC_GET = Command(SERVICE, "bmc_get", ById, Bmc, 10.0, "One BMC")
BMC_LIST = Command(SERVICE, "bmc_list", BmcQuery, Page[Bmc], 10.0, "BMCs, by id")
BMC_UPDATE = Command(
    SERVICE, "bmc_update", UpdateRequest[BmcUpdate], Bmc, 10.0, "Change a BMC's settings"
)
BMC_DELETE = Command(SERVICE, "bmc_delete", ById, Bmc, 10.0, "Forget a BMC and its secrets")
DRIVER_LIST = Command(
    SERVICE, "driver_list", Empty, DriverList, 5.0, "Drivers and their settings schemas"
)

# Actions retry transient failures and wait for the BMC to confirm: give them time.
ACTION_TIMEOUT = 120.0
POWER_ON = Command(
    SERVICE, "power_on", PowerOnRequest, PowerResult, ACTION_TIMEOUT, "Power on (never cycles)"
)
POWER_OFF = Command(
    SERVICE, "power_off", PowerOffRequest, PowerResult, ACTION_TIMEOUT, "Power off (hard or soft)"
)
POWER_CYCLE = Command(
    SERVICE, "power_cycle", ById, PowerResult, ACTION_TIMEOUT, "Power cycle (on if it was off)"
)
POWER_QUERY = Command(
    SERVICE, "power_query", ById, PowerResult, ACTION_TIMEOUT, "Ask the BMC for the power state"
)
SET_BOOT_DEVICE = Command(
    SERVICE,
    "set_boot_device",
    SetBootDeviceRequest,
    PowerResult,
    ACTION_TIMEOUT,
    "Set the next boot device",
)


# -- events -------------------------------------------------------------------------------


@event(SERVICE, "bmc", "created")
class BmcCreated(EventPayload):
    """A BMC was added (its secrets are not in the event)."""

    bmc: Bmc


@event(SERVICE, "bmc", "updated")
class BmcUpdated(EventPayload):
    """A BMC's settings changed."""

    bmc: Bmc


@event(SERVICE, "bmc", "deleted")
class BmcDeleted(EventPayload):
    """A BMC was deleted with its secrets; the payload is its last state."""

    bmc: Bmc


@event(SERVICE, "state", "changed")
class PowerStateChanged(EventPayload):
    """The power state learned from a BMC differs from the one known before."""

    bmc_id: int
    machine_id: str | None
    previous: PowerState
    state: PowerState
    cause: Literal["poll", "action"]
    action: PowerAction | None = None


@event(SERVICE, "action", "failed")
class PowerActionFailed(EventPayload):
    """A power action did not complete; ``code`` is the error code the caller got."""

    bmc_id: int
    machine_id: str | None
    action: PowerAction
    code: str
    message: str
    attempts: int


@event(SERVICE, "bmc", "unreachable")
class BmcUnreachable(EventPayload):
    """Polling gave up on a BMC for now after ``failures`` failed queries in a row."""

    bmc_id: int
    machine_id: str | None
    failures: int
    message: str


@event(SERVICE, "bmc", "recovered")
class BmcRecovered(EventPayload):
    """A BMC that was unreachable answered again."""

    bmc_id: int
    machine_id: str | None
    failures: int
    power_state: PowerState
