"""The ipam service as the runtime runs it: its commands, event feeds and loops."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from metalbus.shared import subjects
from metalbus.shared.bus import Handler
from metalbus.shared.commands import Command, Empty
from metalbus.shared.contract import ipam as contract
from metalbus.shared.contract.ipam import ById
from metalbus.shared.runtime import ServiceDefinition, ServiceRuntime, run_service

from . import subnets, topology
from .addresses import Allocator
from .feeds import answered_host_consumer, housekeeping, lease_consumer, neighbour_consumer
from .models import FabricRow, SpaceRow, VlanRow
from .settings import IpamSettings
from .store import fabric_public, get_row, page_of, space_public, vlan_public

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


async def setup(rt: ServiceRuntime) -> None:
    """Register every ipam command, the boot and discovery feeds, and housekeeping."""
    settings = rt.settings
    assert isinstance(settings, IpamSettings)
    db = rt.db
    allocator = Allocator(db, settings)

    def getter(model: type[Any], to_public: Callable[[Any], Any]) -> Handler:
        async def get(request: ById) -> Any:
            async with db.read() as session:
                return to_public(await get_row(session, model, request.id))

        return get

    def lister(model: type[Any], to_public: Callable[[Any], Any]) -> Handler:
        async def list_all(request: contract.PageRequest) -> Any:
            async with db.read() as session:
                return await page_of(session, model, request, to_public)

        return list_all

    async def list_vlans(request: contract.VlanQuery) -> contract.Page[contract.Vlan]:
        conditions = []
        if request.fabric_id is not None:
            conditions.append(VlanRow.fabric_id == request.fabric_id)
        if request.space_id is not None:
            conditions.append(VlanRow.space_id == request.space_id)
        async with db.read() as session:
            return await page_of(session, VlanRow, request, vlan_public, *conditions)

    async def dhcp_config(_: Empty) -> contract.DhcpConfig:
        return await allocator.dhcp_config()

    handlers: dict[Command[Any, Any], Handler] = {
        contract.FABRIC_CREATE: partial(topology.create_fabric, db),
        contract.FABRIC_GET: getter(FabricRow, fabric_public),
        contract.FABRIC_LIST: lister(FabricRow, fabric_public),
        contract.FABRIC_UPDATE: partial(topology.update_fabric, db),
        contract.FABRIC_DELETE: partial(topology.delete_fabric, db),
        contract.SPACE_CREATE: partial(topology.create_space, db),
        contract.SPACE_GET: getter(SpaceRow, space_public),
        contract.SPACE_LIST: lister(SpaceRow, space_public),
        contract.SPACE_UPDATE: partial(topology.update_space, db),
        contract.SPACE_DELETE: partial(topology.delete_space, db),
        contract.VLAN_CREATE: partial(topology.create_vlan, db),
        contract.VLAN_GET: getter(VlanRow, vlan_public),
        contract.VLAN_LIST: list_vlans,
        contract.VLAN_UPDATE: partial(topology.update_vlan, db),
        contract.VLAN_DELETE: partial(topology.delete_vlan, db),
        contract.SUBNET_CREATE: partial(subnets.create_subnet, db, settings),
        contract.SUBNET_GET: lambda r: subnets.get_subnet(db, r.id),
        contract.SUBNET_LIST: partial(subnets.list_subnets, db),
        contract.SUBNET_UPDATE: partial(subnets.update_subnet, db, settings),
        contract.SUBNET_DELETE: partial(subnets.delete_subnet_command, db),
        contract.SUBNET_STATISTICS: allocator.statistics,
        contract.ROUTE_CREATE: partial(subnets.create_route, db, settings),
        contract.ROUTE_GET: lambda r: subnets.get_route(db, r.id),
        contract.ROUTE_LIST: partial(subnets.list_routes, db),
        contract.ROUTE_UPDATE: partial(subnets.update_route, db, settings),
        contract.ROUTE_DELETE: partial(subnets.delete_route, db, settings),
        contract.RANGE_CREATE: partial(subnets.create_range, db, settings),
        contract.RANGE_GET: lambda r: subnets.get_range(db, r.id),
        contract.RANGE_LIST: partial(subnets.list_ranges, db),
        contract.RANGE_UPDATE: partial(subnets.update_range, db, settings),
        contract.RANGE_DELETE: partial(subnets.delete_range, db, settings),
        contract.ADDRESS_ALLOCATE: allocator.allocate,
        contract.ADDRESS_RELEASE: allocator.release,
        contract.ADDRESS_GET: lambda r: allocator.get(r.id),
        contract.ADDRESS_LIST: allocator.list,
        contract.DHCP_CONFIG: dhcp_config,
    }
    for command, handler in handlers.items():
        rt.command(command, handler)
    rt.consumer(
        "boot",
        "leases",
        lease_consumer(rt, settings),
        filter_subject=subjects.entity_events("boot", "lease"),
    )
    rt.consumer(
        "discovery",
        "neighbours",
        neighbour_consumer(rt, settings),
        filter_subject=subjects.entity_events("discovery", "neighbour"),
    )
    rt.consumer(
        "discovery",
        "answered-hosts",
        answered_host_consumer(rt, settings),
        filter_subject=subjects.entity_events("discovery", "host"),
    )
    rt.background(housekeeping(rt, settings, allocator.forget_request_keys))


DEFINITION = ServiceDefinition(
    name="ipam",
    description="IP address management: fabrics, VLANs, spaces, subnets, ranges, addresses",
    settings_type=IpamSettings,
    migrations=[MIGRATIONS],
    setup=setup,
)


def main() -> None:
    """Run the ipam service until SIGTERM or SIGINT."""
    run_service(DEFINITION)
