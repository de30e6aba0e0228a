"""Power drivers, by name: ipmi, redfish, virsh, webhook, manual."""

from __future__ import annotations

from metalbus.shared.contract.power import DriverName

from .base import DriverError, FatalError, PowerDriver, TransientError
from .ipmi import IpmiDriver
from .manual import ManualDriver
from .redfish import RedfishDriver
from .virsh import VirshDriver
from .webhook import WebhookDriver

DRIVERS: dict[DriverName, type[PowerDriver]] = {  # type: ignore[type-arg]
    d.name: d for d in (IpmiDriver, RedfishDriver, VirshDriver, WebhookDriver, ManualDriver)
}

__all__ = ["DRIVERS", "DriverError", "FatalError", "PowerDriver", "TransientError"]
