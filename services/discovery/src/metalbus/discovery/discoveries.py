"""Discoveries: the stored neighbours joined with what ipam knows, and the MAC's vendor.

For one page the service asks ipam for its subnets (``subnet_list``, every page) and, per
distinct address and MAC of the page, for the addresses in use (``address_list`` with
``ip=`` / ``mac=``). An address is *known* when ipam has it assigned (auto, sticky or
user-reserved): a DISCOVERED record (ipam's copy of our own observation) or a DHCP lease
does not make it known. A MAC is known when it is on such an assigned address, or on an
interface of a machine or device the api has (``inventory``: a device with a dynamic address
has nothing in ipam).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

from sqlalchemy import select

from metalbus.shared.bus import Bus
from metalbus.shared.contract import ipam
from metalbus.shared.contract.discovery import Discovery, DiscoveryQuery, MakeKnown, Unknown
from metalbus.shared.db import Database
from metalbus.shared.errors import NotFound
from metalbus.shared.events import as_utc

from .inventory import known_macs
from .models import MdnsNameRow, NeighbourRow
from .oui import VendorTable

TABLE = NeighbourRow.__table__  # type: ignore[attr-defined]
NAMES = MdnsNameRow.__table__  # type: ignore[attr-defined]
_ASSIGNED = frozenset(ipam.ASSIGNABLE_TYPES)
_IPAM_CONCURRENCY = 16


@dataclass(frozen=True)
class _SubnetView:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    subnet: ipam.Subnet


async def ipam_subnets(bus: Bus) -> list[_SubnetView]:
    """Every subnet ipam has (all pages)."""
    found: list[_SubnetView] = []
    after = 0
    while True:
        page = await bus.request(ipam.SUBNET_LIST, ipam.SubnetQuery(after=after, limit=1000))
        found.extend(_SubnetView(ipaddress.ip_network(s.cidr), s) for s in page.items)
        if page.next is None:
            return found
        after = page.next


class Discoveries:
    """Answers ``discovery_list``."""

    def __init__(self, db: Database, bus: Bus, vendors: VendorTable) -> None:
        self.db = db
        self.bus = bus
        self.vendors = vendors

    async def _assigned(self, query: ipam.IpAddressQuery, gate: asyncio.Semaphore) -> bool:
        async with gate:
            page = await self.bus.request(ipam.ADDRESS_LIST, query)
        return any(a.alloc_type in _ASSIGNED for a in page.items)

    async def list(self, request: DiscoveryQuery) -> ipam.Page[Discovery]:
        """One page of discoveries, filtered; ``next`` is the last id looked at."""
        subnets = await ipam_subnets(self.bus)
        wanted: _SubnetView | None = None
        if request.subnet_id is not None:
            wanted = next((v for v in subnets if v.subnet.id == request.subnet_id), None)
            if wanted is None:
                raise NotFound(f"ipam has no subnet {request.subnet_id}", field="subnet_id")
        items: list[Discovery] = []
        after = request.after
        gate = asyncio.Semaphore(_IPAM_CONCURRENCY)
        while len(items) < request.limit:
            statement = select(TABLE).where(TABLE.c.id > after)
            if request.mac is not None:
                statement = statement.where(TABLE.c.mac == request.mac)
            if request.ip is not None:
                statement = statement.where(TABLE.c.ip == request.ip)
            chunk_size = max(request.limit, 100)
            async with self.db.engine.connect() as conn:
                rows = (await conn.execute(statement.order_by(TABLE.c.id).limit(chunk_size))).all()
            if not rows:
                return ipam.Page[Discovery](items=items, next=None)
            joined = []
            for row in rows:
                address = ipaddress.ip_address(row.ip)
                holder = next((v for v in subnets if address in v.network), None)
                if wanted is not None and holder is not wanted:
                    continue
                joined.append((row, holder))
            ips = {row.ip for row, _ in joined}
            macs = {row.mac for row, _ in joined}
            async with self.db.engine.connect() as conn:
                named = (
                    await conn.execute(
                        select(NAMES.c.ip, NAMES.c.hostname)
                        .where(NAMES.c.ip.in_(ips))
                        .order_by(NAMES.c.last_seen)
                    )
                ).all()
                on_interfaces = await known_macs(conn, macs)
            hostnames = {r.ip: r.hostname for r in named}  # the latest name wins
            ip_known = dict(
                zip(
                    ips,
                    await asyncio.gather(
                        *(self._assigned(ipam.IpAddressQuery(ip=ip), gate) for ip in ips)
                    ),
                    strict=True,
                )
            )
            mac_known = dict(
                zip(
                    macs,
                    await asyncio.gather(
                        *(self._assigned(ipam.IpAddressQuery(mac=mac), gate) for mac in macs)
                    ),
                    strict=True,
                )
            )
            for row, holder in joined:
                mac_is_known = mac_known[row.mac] or row.mac.lower() in on_interfaces
                found = _discovery(row, holder, ip_known[row.ip], mac_is_known, self.vendors)
                found.hostname = hostnames.get(row.ip)
                if _wanted(found, request.unknown):
                    items.append(found)
                    if len(items) == request.limit:
                        return ipam.Page[Discovery](items=items, next=found.id)
            after = rows[-1].id
            if len(rows) < chunk_size:
                return ipam.Page[Discovery](items=items, next=None)
        return ipam.Page[Discovery](items=items, next=after)

    async def make_known(self, request: MakeKnown) -> ipam.IpAddress:
        """Assign the discovery's address in ipam to a device (see :class:`MakeKnown`).

        Raises:
            NotFound: no discovery of this address and MAC.
            MetalbusError: what ipam answered (the address is assigned to something else...).
        """
        statement = select(TABLE.c.id).where(TABLE.c.ip == request.ip, TABLE.c.mac == request.mac)
        async with self.db.engine.connect() as conn:
            if (await conn.execute(statement.limit(1))).first() is None:
                raise NotFound(f"no discovery of {request.ip} at {request.mac}", field="ip")
        allocate = ipam.AllocateAddress(
            ip=request.ip,
            mac=request.mac,
            hostname=request.hostname,
            alloc_type=request.alloc_type,
            owner_type=ipam.OwnerType.DEVICE,
            owner_id=request.owner_id or request.mac,
        )
        return await self.bus.request(ipam.ADDRESS_ALLOCATE, allocate)


def _wanted(found: Discovery, unknown: Unknown | None) -> bool:
    if unknown is Unknown.MAC:
        return not found.mac_known
    if unknown is Unknown.IP:
        return not found.ip_known
    if unknown is Unknown.BOTH:
        return not found.mac_known and not found.ip_known
    return True


def _discovery(
    row: object, holder: _SubnetView | None, ip_known: bool, mac_known: bool, vendors: VendorTable
) -> Discovery:
    subnet = holder.subnet if holder is not None else None
    return Discovery(
        id=row.id,  # type: ignore[attr-defined]
        ip=row.ip,  # type: ignore[attr-defined]
        mac=row.mac,  # type: ignore[attr-defined]
        vid=row.vid or None,  # type: ignore[attr-defined]
        interface=row.interface,  # type: ignore[attr-defined]
        observer=row.observer,  # type: ignore[attr-defined]
        vendor=vendors.vendor(row.mac),  # type: ignore[attr-defined]
        first_seen=as_utc(row.first_seen),  # type: ignore[attr-defined]
        last_seen=as_utc(row.last_seen),  # type: ignore[attr-defined]
        count=row._mapping["count"],  # type: ignore[attr-defined]
        subnet_id=subnet.id if subnet else None,
        subnet_cidr=subnet.cidr if subnet else None,
        vlan_id=subnet.vlan_id if subnet else None,
        fabric_id=subnet.fabric_id if subnet else None,
        ip_known=ip_known,
        mac_known=mac_known,
    )
