"""``/api/v1/pools``: resource pools set machines aside for a team or a purpose;
allocation can ask for one."""

from metalbus.shared.contract import machines as m

from ..machines.models import ResourcePool
from .named import NamedKind, named_router

router = named_router(
    NamedKind(
        ResourcePool,
        "/pools",
        "resource pool",
        "pool_id",
        m.PoolCreated,
        m.PoolUpdated,
        m.PoolDeleted,
    )
)
