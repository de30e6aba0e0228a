"""Manual: a person presses the button. Actions are recorded, the state is never known."""

from __future__ import annotations

import logging

from metalbus.shared.contract.power import BootDevice, BootMode, DriverName, PowerState

from .base import DriverSettingsModel, FatalError, PowerDriver

log = logging.getLogger(__name__)


class ManualSettings(DriverSettingsModel):
    """No settings: there is nothing to reach."""


class ManualDriver(PowerDriver[ManualSettings]):
    """Records the intent; someone powers the machine by hand."""

    name = DriverName.MANUAL
    description = "No BMC: actions are recorded for a person to carry out; the state is unknown"
    settings_model = ManualSettings
    can_query = False
    soft_off = False
    boot_device = False

    async def power_on(self) -> None:
        log.info("manual power: the machine should now be powered on by hand")

    async def power_off(self, soft: bool) -> None:
        log.info("manual power: the machine should now be powered off by hand")

    async def query(self) -> PowerState:
        return PowerState.UNKNOWN

    async def set_boot_device(self, device: BootDevice, persistent: bool, mode: BootMode) -> None:
        raise FatalError("manual BMCs cannot set the boot device")
