"""Subnets, their static routes and their IP ranges.

Every change that moves what may be assigned automatically (a range, the gateway, a DNS
server, a route gateway, ``managed``) rebuilds the subnet's free blocks for the window it
touched, in the same transaction, under the subnet's lock (:mod:`metalbus.ipam.pool`).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract.ipam import (
    AddressType,
    DeleteRequest,
    IpRange,
    IpRangeCreate,
    IpRangeCreated,
    IpRangeDeleted,
    IpRangeQuery,
    IpRangeType,
    IpRangeUpdate,
    IpRangeUpdated,
    Page,
    StaticRoute,
    StaticRouteCreate,
    StaticRouteCreated,
    StaticRouteDeleted,
    StaticRouteQuery,
    StaticRouteUpdate,
    StaticRouteUpdated,
    Subnet,
    SubnetCreate,
    SubnetCreated,
    SubnetDeleted,
    SubnetLowOnAddresses,
    SubnetQuery,
    SubnetUpdate,
    SubnetUpdated,
    UpdateRequest,
    VlanUpdated,
)
from metalbus.shared.db import Database
from metalbus.shared.errors import Conflict, NotFound, ValidationFailed
from metalbus.shared.events import utcnow

from .claims import low_transition
from .models import (
    FabricRow,
    FreeBlockRow,
    IpAddressRow,
    IpRangeRow,
    StaticRouteRow,
    SubnetRow,
    VlanRow,
)
from .pool import SubnetLayout, addresses_inside, load_layout, network_of, rebuild
from .settings import IpamSettings
from .spans import Network, Span, address_key, from_key, usable_span
from .store import (
    conflicts_as_errors,
    emit,
    get_row,
    lock_subnet,
    page_of,
    range_public,
    refuse_nulls,
    route_public,
    subnet_public,
    subnet_with_vlan,
    subnets_public,
    vlan_public,
)

# -- addresses as input ------------------------------------------------------------------


def parse_cidr(text: str, field: str = "cidr") -> Network:
    """A network from ``a.b.c.d/n`` or ``x::/n``; host bits set is an error, as in MAAS."""
    if "/" not in text:
        raise ValidationFailed(f"{text!r} needs a prefix length (e.g. {text}/24)", field=field)
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ValidationFailed(f"{text!r} is not an IPv4 or IPv6 CIDR", field=field) from None
        raise ValidationFailed(
            f"{text!r} has host bits set; the network is {loose}", field=field
        ) from None


def address_in(network: Network, text: str, field: str, what: str = "address") -> int:
    """An address that must be a usable address of ``network``."""
    address = ipaddress.ip_address(text)
    if address.version != network.version:
        raise ValidationFailed(
            f"{what} {text} is IPv{address.version}; the subnet {network} is IPv{network.version}",
            field=field,
        )
    usable = usable_span(network)
    value = int(address)
    if address not in network:
        raise ValidationFailed(f"{what} {text} is not in {network}", field=field)
    if usable is None or not usable[0] <= value <= usable[1]:
        raise ValidationFailed(
            f"{what} {text} is the network, broadcast or subnet-router address of {network}",
            field=field,
        )
    return value


# -- low-address alarm --------------------------------------------------------------------


def check_low_on_addresses(
    session: AsyncSession, subnet: SubnetRow, total: int, settings: IpamSettings
) -> None:
    """Publish ``subnet.low_on_addresses`` when free addresses cross below the threshold.

    Once per crossing: the alarm re-arms when the subnet has more than the threshold free.
    """
    threshold = (
        subnet.low_free_threshold
        if subnet.low_free_threshold is not None
        else settings.low_free_threshold
    )
    available = int(subnet.available)
    low, crossed = low_transition(available, total, threshold, subnet.low_alarm)
    if crossed:
        emit(
            session,
            SubnetLowOnAddresses(
                subnet_id=subnet.id or 0,
                cidr=subnet.cidr,
                available=available,
                total=total,
                threshold=threshold,
            ),
            f"subnet/{subnet.id}",
        )
    subnet.low_alarm = low


async def refresh_pool(
    session: AsyncSession, subnet: SubnetRow, windows: list[Span], settings: IpamSettings
) -> SubnetLayout:
    """Rebuild the free blocks of ``windows`` from the subnet's current layout."""
    await session.flush()
    layout = await load_layout(session, subnet)
    for first, last in windows:
        await rebuild(session, subnet, layout, first, last)
    check_low_on_addresses(session, subnet, layout.total, settings)
    session.add(subnet)
    return layout


async def vlan_has_dynamic_range(session: AsyncSession, vlan_id: int) -> bool:
    """Whether DHCP on the VLAN has a dynamic range on a managed subnet to lease from."""
    count = (
        await session.exec(
            select(func.count())
            .select_from(IpRangeRow)
            .join(SubnetRow, col(SubnetRow.id) == col(IpRangeRow.subnet_id))
            .where(
                SubnetRow.vlan_id == vlan_id,
                col(SubnetRow.managed).is_(True),
                IpRangeRow.type == IpRangeType.DYNAMIC.value,
            )
        )
    ).one()
    return bool(count)


async def _keep_dhcp_served(session: AsyncSession, vlan_id: int, field: str) -> None:
    vlan = await get_row(session, VlanRow, vlan_id, field="vlan_id")
    if vlan.dhcp_on and not await vlan_has_dynamic_range(session, vlan_id):
        raise Conflict(
            f"VLAN {vlan.vid} serves DHCP and would have no dynamic range left; "
            "turn DHCP off on it first",
            field=field,
        )


async def _assigned_in(session: AsyncSession, subnet_id: int, first: int, last: int) -> int:
    """How many assigned (not leased, not discovered) addresses lie in ``first..last``."""
    return int(
        (
            await session.exec(
                select(func.count())
                .select_from(IpAddressRow)
                .where(
                    IpAddressRow.subnet_id == subnet_id,
                    col(IpAddressRow.ip_key) >= address_key(first),
                    col(IpAddressRow.ip_key) <= address_key(last),
                    col(IpAddressRow.alloc_type).not_in(
                        [AddressType.DHCP.value, AddressType.DISCOVERED.value]
                    ),
                )
            )
        ).one()
    )


# -- subnets ------------------------------------------------------------------------------


async def default_vlan(session: AsyncSession) -> VlanRow:
    """The default VLAN of the first fabric (``fabric-0`` is made when there is none)."""
    from .topology import create_default_fabric  # topology deletes subnets: import late

    fabric = (await session.exec(select(FabricRow).order_by(col(FabricRow.id)).limit(1))).first()
    if fabric is None:
        fabric = await create_default_fabric(session, "fabric-0")
    return await get_row(session, VlanRow, fabric.default_vlan_id or 0, field="vlan_id")


def _check_gateway(
    network: Network, layout_ranges: list[IpRangeRow], gateway: str, field: str
) -> int:
    value = address_in(network, gateway, field, "the gateway")
    for r in layout_ranges:
        if from_key(r.start_key) <= value <= from_key(r.end_key):
            raise ValidationFailed(
                f"the gateway {gateway} is inside the {r.type} range {r.start_ip}-{r.end_ip}",
                field=field,
            )
    return value


@conflicts_as_errors("a subnet with that CIDR exists", "cidr")
async def create_subnet(db: Database, settings: IpamSettings, request: SubnetCreate) -> Subnet:
    network = parse_cidr(request.cidr)
    async with db.transaction() as session:
        overlapping = (
            await session.exec(
                select(SubnetRow).where(
                    SubnetRow.ip_version == network.version,
                    col(SubnetRow.first_key) <= address_key(int(network.broadcast_address)),
                    col(SubnetRow.last_key) >= address_key(int(network.network_address)),
                )
            )
        ).first()
        if overlapping is not None:
            raise Conflict(
                f"{network} overlaps the subnet {overlapping.cidr} (id {overlapping.id})",
                field="cidr",
            )
        if request.vlan_id is not None:
            vlan = await get_row(session, VlanRow, request.vlan_id, field="vlan_id")
        else:
            vlan = await default_vlan(session)
        if request.gateway_ip is not None:
            _check_gateway(network, [], request.gateway_ip, "gateway_ip")
        now = utcnow()
        subnet = SubnetRow(
            cidr=str(network),
            ip_version=network.version,
            first_key=address_key(int(network.network_address)),
            last_key=address_key(int(network.broadcast_address)),
            name=request.name or str(network),
            description=request.description,
            vlan_id=vlan.id or 0,
            gateway_ip=request.gateway_ip,
            dns_servers=json.dumps(request.dns_servers),
            ntp_servers=json.dumps(request.ntp_servers),
            domain=request.domain,
            managed=request.managed,
            allow_dns=request.allow_dns,
            active_discovery=request.active_discovery,
            disabled_boot_architectures=json.dumps(request.disabled_boot_architectures),
            low_free_threshold=request.low_free_threshold,
            available="0",
            created_at=now,
            updated_at=now,
        )
        session.add(subnet)
        usable = usable_span(network)
        await refresh_pool(session, subnet, [usable] if usable else [], settings)
        public = subnet_public(subnet, vlan)
        emit(session, SubnetCreated(subnet=public), f"subnet/{subnet.id}")
        return public


async def get_subnet(db: Database, subnet_id: int) -> Subnet:
    async with db.read() as session:
        return await subnet_with_vlan(session, await get_row(session, SubnetRow, subnet_id))


async def list_subnets(db: Database, request: SubnetQuery) -> Page[Subnet]:
    conditions: list[Any] = []
    if request.vlan_id is not None:
        conditions.append(SubnetRow.vlan_id == request.vlan_id)
    if request.fabric_id is not None or request.space_id is not None:
        vlans = select(VlanRow.id)
        if request.fabric_id is not None:
            vlans = vlans.where(VlanRow.fabric_id == request.fabric_id)
        if request.space_id is not None:
            vlans = vlans.where(VlanRow.space_id == request.space_id)
        conditions.append(col(SubnetRow.vlan_id).in_(vlans))
    if request.contains is not None:
        address = ipaddress.ip_address(request.contains)
        key = address_key(int(address))
        conditions += [
            SubnetRow.ip_version == address.version,
            col(SubnetRow.first_key) <= key,
            col(SubnetRow.last_key) >= key,
        ]
    async with db.read() as session:
        page = await page_of(session, SubnetRow, request, lambda r: r, *conditions)
        return Page[Subnet](items=await subnets_public(session, page.items), next=page.next)


async def update_subnet(
    db: Database, settings: IpamSettings, request: UpdateRequest[SubnetUpdate]
) -> Subnet:
    changes = request.changes.model_dump(exclude_unset=True)
    async with db.transaction() as session:
        subnet = await lock_subnet(session, request.id)
        network = network_of(subnet)
        ranges = list(
            (await session.exec(select(IpRangeRow).where(IpRangeRow.subnet_id == subnet.id))).all()
        )
        windows: list[Span] = []
        refuse_nulls(changes, "managed", "allow_dns", "active_discovery", "name")
        old_vlan = subnet.vlan_id
        if changes.get("vlan_id") is not None:
            await get_row(session, VlanRow, changes["vlan_id"], field="changes.vlan_id")
        if "gateway_ip" in changes:
            if changes["gateway_ip"] is not None:
                value = _check_gateway(network, ranges, changes["gateway_ip"], "changes.gateway_ip")
                if await _assigned_in(session, subnet.id or 0, value, value):
                    raise Conflict(
                        f"{changes['gateway_ip']} is assigned to something; release it first",
                        field="changes.gateway_ip",
                    )
            windows += [
                (p, p)
                for p in addresses_inside(network, [subnet.gateway_ip, changes["gateway_ip"]])
            ]
        for listed in ("dns_servers", "ntp_servers"):
            if listed in changes:
                new = changes[listed] or []
                if listed == "dns_servers":
                    windows += [
                        (p, p)
                        for p in addresses_inside(network, [*json.loads(subnet.dns_servers), *new])
                    ]
                changes[listed] = json.dumps(new)
        if "disabled_boot_architectures" in changes:
            changes["disabled_boot_architectures"] = json.dumps(
                changes["disabled_boot_architectures"] or []
            )
        if "managed" in changes and changes["managed"] != subnet.managed:
            if not changes["managed"] and any(r.type == IpRangeType.DYNAMIC.value for r in ranges):
                raise ValidationFailed(
                    "an unmanaged subnet has no dynamic ranges (DHCP never leases from it); "
                    "delete them first",
                    field="changes.managed",
                )
            usable = usable_span(network)
            windows += [usable] if usable else []
        for key, value in changes.items():
            setattr(subnet, key, "" if key == "description" and value is None else value)
        subnet.updated_at = utcnow()
        await refresh_pool(session, subnet, windows, settings)
        if subnet.vlan_id != old_vlan:
            await _keep_dhcp_served(session, old_vlan, "changes.vlan_id")
        public = await subnet_with_vlan(session, subnet)
        emit(session, SubnetUpdated(subnet=public), f"subnet/{subnet.id}")
        return public


async def delete_subnet(session: AsyncSession, subnet: SubnetRow) -> Subnet:
    """Delete a subnet with its addresses, ranges and routes (events staged); no checks."""
    public = await subnet_with_vlan(session, subnet)
    sid = subnet.id or 0
    released = int(
        (
            await session.exec(
                select(func.count()).select_from(IpAddressRow).where(IpAddressRow.subnet_id == sid)
            )
        ).one()
    )
    await session.exec(delete(FreeBlockRow).where(col(FreeBlockRow.subnet_id) == sid))
    await session.exec(delete(IpAddressRow).where(col(IpAddressRow.subnet_id) == sid))
    for r in (await session.exec(select(IpRangeRow).where(IpRangeRow.subnet_id == sid))).all():
        await session.delete(r)
        emit(
            session, IpRangeDeleted(range=range_public(r), vlan_id=subnet.vlan_id), f"range/{r.id}"
        )
    routes = (
        await session.exec(
            select(StaticRouteRow).where(
                (StaticRouteRow.source_subnet_id == sid)
                | (StaticRouteRow.destination_subnet_id == sid)
            )
        )
    ).all()
    for route in routes:
        await _remove_route(session, route, None)
    await session.flush()
    await session.delete(subnet)
    await session.flush()
    emit(session, SubnetDeleted(subnet=public, addresses_released=released), f"subnet/{sid}")
    vlan = await get_row(session, VlanRow, subnet.vlan_id, field="vlan_id")
    if vlan.dhcp_on and not await vlan_has_dynamic_range(session, subnet.vlan_id):
        # DHCP cannot go on without a dynamic range: the VLAN stops serving it.
        vlan.dhcp_on = False
        vlan.updated_at = utcnow()
        session.add(vlan)
        emit(session, VlanUpdated(vlan=vlan_public(vlan)), f"vlan/{vlan.id}")
    return public


async def delete_subnet_command(db: Database, request: DeleteRequest) -> Subnet:
    async with db.transaction() as session:
        subnet = await lock_subnet(session, request.id)
        in_use = int(
            (
                await session.exec(
                    select(func.count())
                    .select_from(IpAddressRow)
                    .where(
                        IpAddressRow.subnet_id == subnet.id,
                        IpAddressRow.alloc_type != AddressType.DISCOVERED.value,
                    )
                )
            ).one()
        )
        if in_use and not request.force:
            raise Conflict(
                f"{subnet.cidr} has {in_use} addresses in use; release them or delete with force",
                field="id",
                details={"addresses_in_use": in_use},
            )
        return await delete_subnet(session, subnet)


# -- static routes ------------------------------------------------------------------------


async def _route_ends(
    session: AsyncSession, source_id: int, destination_id: int, gateway: str, prefix: str
) -> tuple[SubnetRow, SubnetRow, int]:
    source = await lock_subnet(session, source_id, field=f"{prefix}source_subnet_id")
    destination = await get_row(
        session, SubnetRow, destination_id, field=f"{prefix}destination_subnet_id"
    )
    if source.id == destination.id:
        raise ValidationFailed(
            "a route goes to another subnet", field=f"{prefix}destination_subnet_id"
        )
    if source.ip_version != destination.ip_version:
        raise ValidationFailed(
            f"{source.cidr} and {destination.cidr} are not of one IP version",
            field=f"{prefix}destination_subnet_id",
        )
    value = address_in(network_of(source), gateway, f"{prefix}gateway_ip", "the route gateway")
    return source, destination, value


@conflicts_as_errors("that route exists", "destination_subnet_id")
async def create_route(
    db: Database, settings: IpamSettings, request: StaticRouteCreate
) -> StaticRoute:
    async with db.transaction() as session:
        source, destination, gateway = await _route_ends(
            session, request.source_subnet_id, request.destination_subnet_id, request.gateway_ip, ""
        )
        now = utcnow()
        route = StaticRouteRow(**request.model_dump(), created_at=now, updated_at=now)
        session.add(route)
        await refresh_pool(session, source, [(gateway, gateway)], settings)
        public = route_public(route, destination.cidr)
        emit(session, StaticRouteCreated(route=public), f"route/{route.id}")
        return public


async def _route_public(session: AsyncSession, route: StaticRouteRow) -> StaticRoute:
    destination = await get_row(session, SubnetRow, route.destination_subnet_id)
    return route_public(route, destination.cidr)


async def get_route(db: Database, route_id: int) -> StaticRoute:
    async with db.read() as session:
        return await _route_public(session, await get_row(session, StaticRouteRow, route_id))


async def list_routes(db: Database, request: StaticRouteQuery) -> Page[StaticRoute]:
    conditions = []
    if request.source_subnet_id is not None:
        conditions.append(StaticRouteRow.source_subnet_id == request.source_subnet_id)
    async with db.read() as session:
        page = await page_of(session, StaticRouteRow, request, lambda r: r, *conditions)
        return Page[StaticRoute](
            items=[await _route_public(session, r) for r in page.items], next=page.next
        )


@conflicts_as_errors("that route exists", "changes.destination_subnet_id")
async def update_route(
    db: Database, settings: IpamSettings, request: UpdateRequest[StaticRouteUpdate]
) -> StaticRoute:
    changes = request.changes.model_dump(exclude_unset=True)
    async with db.transaction() as session:
        route = await get_row(session, StaticRouteRow, request.id)
        refuse_nulls(changes, *changes)
        old_gateway = int(ipaddress.ip_address(route.gateway_ip))
        source, destination, gateway = await _route_ends(
            session,
            route.source_subnet_id,
            changes.get("destination_subnet_id", route.destination_subnet_id),
            changes.get("gateway_ip", route.gateway_ip),
            "changes.",
        )
        for key, value in changes.items():
            setattr(route, key, value)
        route.updated_at = utcnow()
        session.add(route)
        await refresh_pool(
            session, source, [(old_gateway, old_gateway), (gateway, gateway)], settings
        )
        public = route_public(route, destination.cidr)
        emit(session, StaticRouteUpdated(route=public), f"route/{route.id}")
        return public


async def _remove_route(
    session: AsyncSession, route: StaticRouteRow, settings: IpamSettings | None
) -> StaticRoute:
    public = await _route_public(session, route)
    source = await lock_subnet(session, route.source_subnet_id)
    await session.delete(route)
    gateway = int(ipaddress.ip_address(route.gateway_ip))
    await session.flush()
    layout = await load_layout(session, source)
    await rebuild(session, source, layout, gateway, gateway)
    if settings is not None:
        check_low_on_addresses(session, source, layout.total, settings)
    session.add(source)
    emit(session, StaticRouteDeleted(route=public), f"route/{public.id}")
    return public


async def delete_route(db: Database, settings: IpamSettings, request: DeleteRequest) -> StaticRoute:
    async with db.transaction() as session:
        route = await get_row(session, StaticRouteRow, request.id)
        return await _remove_route(session, route, settings)


# -- IP ranges ----------------------------------------------------------------------------


async def subnet_holding(session: AsyncSession, text: str, field: str) -> SubnetRow:
    """The subnet whose CIDR holds an address."""
    address = ipaddress.ip_address(text)
    key = address_key(int(address))
    row = (
        await session.exec(
            select(SubnetRow)
            .where(
                SubnetRow.ip_version == address.version,
                col(SubnetRow.first_key) <= key,
                col(SubnetRow.last_key) >= key,
            )
            .limit(1)
        )
    ).first()
    if row is None:
        raise NotFound(f"{text} is in no known subnet", field=field)
    return row


async def _check_range(
    session: AsyncSession,
    subnet: SubnetRow,
    kind: str,
    start_ip: str,
    end_ip: str,
    prefix: str,
    *,
    replacing: int | None = None,
) -> tuple[int, int]:
    network = network_of(subnet)
    start = address_in(network, start_ip, f"{prefix}start_ip", "the range start")
    end = address_in(network, end_ip, f"{prefix}end_ip", "the range end")
    if end < start:
        raise ValidationFailed(
            f"the range ends ({end_ip}) before it starts ({start_ip})", field=f"{prefix}end_ip"
        )
    if kind == IpRangeType.DYNAMIC.value and not subnet.managed:
        raise ValidationFailed(
            f"{subnet.cidr} is unmanaged: DHCP never leases from it, so it has no dynamic ranges",
            field=f"{prefix}type",
        )
    if subnet.gateway_ip is not None:
        gateway = int(ipaddress.ip_address(subnet.gateway_ip))
        if start <= gateway <= end:
            raise ValidationFailed(
                f"the range {start_ip}-{end_ip} includes the gateway {subnet.gateway_ip}",
                field=f"{prefix}start_ip",
            )
    others = (
        await session.exec(
            select(IpRangeRow).where(
                IpRangeRow.subnet_id == subnet.id,
                col(IpRangeRow.start_key) <= address_key(end),
                col(IpRangeRow.end_key) >= address_key(start),
                col(IpRangeRow.id) != (replacing or 0),
            )
        )
    ).first()
    if others is not None:
        raise ValidationFailed(
            f"the range {start_ip}-{end_ip} overlaps the {others.type} range "
            f"{others.start_ip}-{others.end_ip} (id {others.id})",
            field=f"{prefix}start_ip",
            details={"range_id": others.id},
        )
    if kind == IpRangeType.DYNAMIC.value:
        assigned = await _assigned_in(session, subnet.id or 0, start, end)
        if assigned:
            raise Conflict(
                f"{assigned} assigned addresses lie in {start_ip}-{end_ip}; a dynamic range "
                "must be free of them",
                field=f"{prefix}start_ip",
                details={"assigned": assigned},
            )
    return start, end


async def create_range(db: Database, settings: IpamSettings, request: IpRangeCreate) -> IpRange:
    async with db.transaction() as session:
        if request.subnet_id is not None:
            subnet = await lock_subnet(session, request.subnet_id, field="subnet_id")
        else:
            found = await subnet_holding(session, request.start_ip, "start_ip")
            subnet = await lock_subnet(session, found.id or 0, field="start_ip")
        start, end = await _check_range(
            session, subnet, request.type.value, request.start_ip, request.end_ip, ""
        )
        now = utcnow()
        row = IpRangeRow(
            subnet_id=subnet.id or 0,
            type=request.type.value,
            start_ip=request.start_ip,
            end_ip=request.end_ip,
            start_key=address_key(start),
            end_key=address_key(end),
            comment=request.comment,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await refresh_pool(session, subnet, [(start, end)], settings)
        public = range_public(row)
        emit(session, IpRangeCreated(range=public, vlan_id=subnet.vlan_id), f"range/{row.id}")
        return public


async def get_range(db: Database, range_id: int) -> IpRange:
    async with db.read() as session:
        return range_public(await get_row(session, IpRangeRow, range_id))


async def list_ranges(db: Database, request: IpRangeQuery) -> Page[IpRange]:
    conditions = []
    if request.subnet_id is not None:
        conditions.append(IpRangeRow.subnet_id == request.subnet_id)
    if request.type is not None:
        conditions.append(IpRangeRow.type == request.type.value)
    async with db.read() as session:
        return await page_of(session, IpRangeRow, request, range_public, *conditions)


async def update_range(
    db: Database, settings: IpamSettings, request: UpdateRequest[IpRangeUpdate]
) -> IpRange:
    changes = request.changes.model_dump(exclude_unset=True)
    async with db.transaction() as session:
        found = await get_row(session, IpRangeRow, request.id)
        subnet = await lock_subnet(session, found.subnet_id, field="subnet_id")
        row = await get_row(session, IpRangeRow, request.id)
        refuse_nulls(changes, "type", "start_ip", "end_ip")
        kind = changes["type"].value if "type" in changes else row.type
        old = (from_key(row.start_key), from_key(row.end_key))
        start, end = await _check_range(
            session,
            subnet,
            kind,
            changes.get("start_ip", row.start_ip),
            changes.get("end_ip", row.end_ip),
            "changes.",
            replacing=row.id,
        )
        row.type = kind
        row.start_ip = changes.get("start_ip", row.start_ip)
        row.end_ip = changes.get("end_ip", row.end_ip)
        row.start_key, row.end_key = address_key(start), address_key(end)
        if "comment" in changes:
            row.comment = changes["comment"] or ""
        row.updated_at = utcnow()
        session.add(row)
        await refresh_pool(session, subnet, [old, (start, end)], settings)
        await _keep_dhcp_served(session, subnet.vlan_id, "changes.type")
        public = range_public(row)
        emit(session, IpRangeUpdated(range=public, vlan_id=subnet.vlan_id), f"range/{row.id}")
        return public


async def delete_range(db: Database, settings: IpamSettings, request: DeleteRequest) -> IpRange:
    async with db.transaction() as session:
        found = await get_row(session, IpRangeRow, request.id)
        subnet = await lock_subnet(session, found.subnet_id, field="subnet_id")
        row = await get_row(session, IpRangeRow, request.id)
        public = range_public(row)
        await session.delete(row)
        await refresh_pool(
            session, subnet, [(from_key(row.start_key), from_key(row.end_key))], settings
        )
        await _keep_dhcp_served(session, subnet.vlan_id, "id")
        emit(session, IpRangeDeleted(range=public, vlan_id=subnet.vlan_id), f"range/{row.id}")
        return public
