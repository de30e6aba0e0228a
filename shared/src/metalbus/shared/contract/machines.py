"""Events the api service publishes about machines, zones and resource pools.

The api owns the machine inventory and drives each machine's life (enlist, commission,
allocate, deploy, release) by calling the other services' commands. Every change of a
machine, zone or pool, and every step of a flow, is one of these events, staged in the
api's outbox in the transaction that made the change.

Machine statuses follow MAAS (see ``docs/machines.md`` for the transition table).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from ..events import EventPayload, event

SERVICE = "api"


class MachineStatus(StrEnum):
    """Where a machine is in its life (MAAS's statuses)."""

    NEW = "new"
    COMMISSIONING = "commissioning"
    FAILED_COMMISSIONING = "failed_commissioning"
    READY = "ready"
    ALLOCATED = "allocated"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    FAILED_DEPLOYMENT = "failed_deployment"
    RELEASING = "releasing"
    FAILED_RELEASING = "failed_releasing"
    BROKEN = "broken"
    RESCUE_MODE = "rescue_mode"
    TESTING = "testing"


class MachineInfo(BaseModel):
    """A machine as events carry it (never its power secrets or callback token)."""

    system_id: str
    hostname: str
    domain: str
    status: MachineStatus
    architecture: str
    cores: int
    memory: int = Field(description="MiB")
    storage: int = Field(description="bytes, every disk")
    zone: str
    pool: str
    tags: list[str]
    owner: str | None
    macs: list[str]
    power_driver: str | None
    pod_id: int | None = Field(description="the KVM host it was composed on")
    vm_id: int | None = Field(description="compose's id of its VM, when composed")


class NamedObject(BaseModel):
    """A zone or a resource pool."""

    id: int
    name: str
    description: str


@event(SERVICE, "machine", "created")
class MachineCreated(EventPayload):
    """A machine was created: ``cause`` says how (enlisted, composed, by hand)."""

    machine: MachineInfo
    cause: str


@event(SERVICE, "machine", "updated")
class MachineUpdated(EventPayload):
    """A machine's attributes changed (hardware, interfaces, power, tags, zone, pool...)."""

    machine: MachineInfo


@event(SERVICE, "machine", "deleted")
class MachineDeleted(EventPayload):
    """A machine was removed (deleted, or decomposed on release); its last state."""

    machine: MachineInfo


@event(SERVICE, "machine", "status_changed")
class MachineStatusChanged(EventPayload):
    """A machine moved from ``previous`` to ``status`` by ``action``."""

    system_id: str
    previous: MachineStatus
    status: MachineStatus
    action: str
    message: str = ""


@event(SERVICE, "machine", "step")
class MachineFlowStep(EventPayload):
    """One step of a machine's flow was done (``boot_config``, ``power_on``...)."""

    system_id: str
    flow: str
    step: str
    detail: str = ""


@event(SERVICE, "machine", "boot_progress")
class MachineBootProgress(EventPayload):
    """A machine in a flow that boots it fetched a boot file (from the boot service's TFTP
    and HTTP boot events): ``progress`` is what it fetched ("kernel fetched"). It moves
    no state; it shows the machine is booting, and holds off its time-out."""

    system_id: str
    status: MachineStatus
    progress: str = Field(description='"loader fetched", "config fetched", "kernel fetched"...')
    filename: str
    via: str = Field(description="tftp or http")
    mac: str


@event(SERVICE, "zone", "created")
class ZoneCreated(EventPayload):
    """A zone was created."""

    zone: NamedObject


@event(SERVICE, "zone", "updated")
class ZoneUpdated(EventPayload):
    """A zone changed."""

    zone: NamedObject


@event(SERVICE, "zone", "deleted")
class ZoneDeleted(EventPayload):
    """A zone was deleted; its last state."""

    zone: NamedObject


@event(SERVICE, "pool", "created")
class PoolCreated(EventPayload):
    """A resource pool was created."""

    pool: NamedObject


@event(SERVICE, "pool", "updated")
class PoolUpdated(EventPayload):
    """A resource pool changed."""

    pool: NamedObject


@event(SERVICE, "pool", "deleted")
class PoolDeleted(EventPayload):
    """A resource pool was deleted; its last state."""

    pool: NamedObject
