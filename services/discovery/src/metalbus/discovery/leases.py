"""DHCP clients the boot service saw: its ``lease.committed`` events as observations.

A client that got a lease answers for that address at that MAC, so each committed lease is
a sighting on the pseudo-interface ``boot`` (the boot service does not say which interface
or VLAN it came in on). It goes through the neighbour table like a frame: decided in memory,
written with the next batch. The consumer acknowledges the event before that write, so a
crash in between loses the sighting until the client's next renewal reports it again.
"""

from __future__ import annotations

from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract.boot import LeaseCommitted
from metalbus.shared.errors import ValidationFailed
from metalbus.shared.events import EVENT_TYPES, RawEvent, as_utc

from .frames import Sighting
from .neighbours import NeighbourTable

BOOT_INTERFACE = "boot"


def lease_consumer(table: NeighbourTable):  # type: ignore[no-untyped-def]
    """``apply`` for the durable consumer ``discovery-leases`` on boot's lease events."""

    async def apply(_session: AsyncSession, event: RawEvent) -> None:
        if EVENT_TYPES.get(event.type) is not LeaseCommitted:
            return  # lease.ended: the client was seen all the same
        try:
            lease = LeaseCommitted.model_validate(event.data)
        except ValidationError as exc:  # not worth redelivering: terminated by the runtime
            raise ValidationFailed(f"event {event.id} has a bad lease: {exc}") from exc
        table.observe(
            BOOT_INTERFACE, Sighting(lease.ip, lease.mac, None, "dhcp_lease"), as_utc(event.time)
        )

    return apply
