"""What compose asks ipam, over the bus (``metalbus.shared.contract.ipam`` commands only).

- correlation: a host address ipam knows as an address of a machine or a device;
- the VLAN, subnet, fabric and space of each host address (correlated hosts only);
- where metalbus DHCP is on (``dhcp_config``: VLANs with ``dhcp_on`` and those relaying);
- whether a requested address is free, then its sticky allocation and its release.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from metalbus.shared.bus import Bus
from metalbus.shared.commands import Empty
from metalbus.shared.contract import ipam as ip
from metalbus.shared.contract.compose import HostInterface, InterfaceLink, LibvirtNetwork
from metalbus.shared.errors import NotFound, RequestTimeout, ServiceUnavailable

log = logging.getLogger(__name__)
PAGE = 1000
_OWNERS = (ip.OwnerType.MACHINE, ip.OwnerType.DEVICE)


class Ipam:
    """The ipam service, as compose uses it."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def correlate(self, addresses: Iterable[str]) -> str | None:
        """``machine:<id> at <ip>`` (or ``device:``) for the first address ipam knows as
        owned by a machine or a device; None when none is (or ipam is not answering)."""
        try:
            for address in dict.fromkeys(addresses):
                page = await self.bus.request(ip.ADDRESS_LIST, ip.IpAddressQuery(ip=address))
                for item in page.items:
                    if item.owner_type in _OWNERS and item.owner_id:
                        return f"{item.owner_type.value}:{item.owner_id} at {item.ip}"
        except (ServiceUnavailable, RequestTimeout) as exc:
            log.warning("ipam is not answering; the host stays uncorrelated: %s", exc)
        return None

    async def subnet_of(self, address: str) -> ip.Subnet | None:
        """The subnet holding ``address``, or None."""
        page = await self.bus.request(ip.SUBNET_LIST, ip.SubnetQuery(contains=address, limit=1))
        return page.items[0] if page.items else None

    async def map_interfaces(self, interfaces: list[HostInterface]) -> list[HostInterface]:
        """The interfaces with each address's subnet, VLAN (and vid), fabric and space."""
        vids: dict[int, int] = {}
        mapped = []
        for iface in interfaces:
            links = []
            for link in iface.links:
                address = str(ipaddress.ip_interface(link.address).ip)
                subnet = await self.subnet_of(address)
                if subnet is None:
                    links.append(link)
                    continue
                if subnet.vlan_id not in vids:
                    vlan = await self.bus.request(ip.VLAN_GET, ip.ById(id=subnet.vlan_id))
                    vids[subnet.vlan_id] = vlan.vid
                links.append(
                    InterfaceLink(
                        address=link.address,
                        subnet_id=subnet.id,
                        cidr=subnet.cidr,
                        vlan_id=subnet.vlan_id,
                        vid=vids[subnet.vlan_id],
                        fabric_id=subnet.fabric_id,
                        space_id=subnet.space_id,
                    )
                )
            mapped.append(iface.model_copy(update={"links": links}))
        return mapped

    async def dhcp_vlans(self) -> set[int]:
        """VLANs metalbus DHCP serves (``dhcp_on``, and the VLANs relaying to them)."""
        config = await self.bus.request(ip.DHCP_CONFIG, Empty())
        return {v.vlan.id for v in config.vlans}

    async def served_networks(
        self, networks: list[LibvirtNetwork], dhcp_vlans: set[int]
    ) -> set[str]:
        """The libvirt networks whose addresses lie on a VLAN metalbus DHCP serves."""
        served = set()
        for net in networks:
            for address in net.addresses:
                subnet = await self.subnet_of(str(ipaddress.ip_interface(address).ip))
                if subnet is not None and subnet.vlan_id in dhcp_vlans:
                    served.add(net.name)
        return served

    async def ids_by_name(self, kind: str) -> dict[str, int]:
        """Spaces or fabrics by name (``kind``: ``space`` or ``fabric``)."""
        names: dict[str, int] = {}
        after = 0
        while True:
            request = ip.PageRequest(after=after, limit=PAGE)
            if kind == "space":
                spaces = await self.bus.request(ip.SPACE_LIST, request)
                names.update({item.name: item.id for item in spaces.items})
                following = spaces.next
            else:
                fabrics = await self.bus.request(ip.FABRIC_LIST, request)
                names.update({item.name: item.id for item in fabrics.items})
                following = fabrics.next
            if following is None:
                return names
            after = following

    async def in_use(self, address: str) -> ip.IpAddress | None:
        """The assignment holding ``address`` (a ``discovered`` record does not count:
        an allocation takes it over)."""
        page = await self.bus.request(ip.ADDRESS_LIST, ip.IpAddressQuery(ip=address))
        for item in page.items:
            if item.alloc_type is not ip.AddressType.DISCOVERED:
                return item
        return None

    async def allocate(self, address: str, *, owner_id: str, hostname: str, mac: str) -> int:
        """Assign ``address`` as STICKY to the VM (owner: machine ``owner_id``); its id."""
        allocated = await self.bus.request(
            ip.ADDRESS_ALLOCATE,
            ip.AllocateAddress(
                ip=address,
                alloc_type=ip.AddressType.STICKY,
                owner_type=ip.OwnerType.MACHINE,
                owner_id=owner_id,
                hostname=hostname,
                mac=mac,
            ),
        )
        return allocated.id

    async def release(self, address_id: int) -> bool:
        """Release an address; False when ipam no longer has it."""
        try:
            await self.bus.request(ip.ADDRESS_RELEASE, ip.ReleaseAddress(id=address_id))
        except NotFound:
            return False
        return True
