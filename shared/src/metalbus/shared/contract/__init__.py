"""The events and commands of each service, one module per owning service.

Importing :mod:`metalbus.shared.contract` registers every event type, so any process can
decode any event (the api's event log and the AsyncAPI generator rely on this).
"""

from . import api, boot, compose, devices, discovery, ipam, machines, power

__all__ = ["api", "boot", "compose", "devices", "discovery", "ipam", "machines", "power"]
