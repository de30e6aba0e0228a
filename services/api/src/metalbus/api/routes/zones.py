"""``/api/v1/zones``: zones group machines (and KVM hosts) for fault tolerance,
performance or power; allocation can ask for one."""

from metalbus.shared.contract import machines as m

from ..machines.models import Zone
from .named import NamedKind, named_router

router = named_router(
    NamedKind(Zone, "/zones", "zone", "zone_id", m.ZoneCreated, m.ZoneUpdated, m.ZoneDeleted)
)
