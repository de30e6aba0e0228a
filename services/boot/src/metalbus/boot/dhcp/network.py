"""What DHCP serves, held in memory: VLANs, IPv4 subnets, dynamic ranges, host reservations.

Loaded from ipam's ``dhcp_config`` snapshot and kept current by ipam's events (vlan, subnet,
range and address). Events carry the object's whole state, so applying one is a replace:
replaying an old event is corrected by the newer ones that follow it in the stream.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from metalbus.shared.contract import ipam

_RESERVATION_TYPES = frozenset(t.value for t in ipam.ASSIGNABLE_TYPES)


@dataclass(frozen=True)
class Reservation:
    """A static address with a MAC: that MAC always gets that address."""

    address_id: int
    ip: str
    mac: str
    hostname: str | None
    subnet_id: int


@dataclass
class SubnetView:
    """One IPv4 subnet as DHCP needs it."""

    id: int
    network: ipaddress.IPv4Network
    vlan_id: int
    gateway: str | None
    dns_servers: list[str]
    ntp_servers: list[str]
    domain: str | None
    managed: bool
    disabled_boot_architectures: frozenset[str]
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)  # range id -> (first, last)

    def holds(self, ip: str | int) -> bool:
        """Whether the address is inside this subnet."""
        return ipaddress.IPv4Address(ip) in self.network

    def in_dynamic_range(self, value: int) -> bool:
        """Whether the address (as an integer) is inside one of the dynamic ranges."""
        return any(first <= value <= last for first, last in self.ranges.values())


@dataclass
class VlanView:
    """A VLAN: whether DHCP is on, and where it relays to."""

    id: int
    mtu: int
    dhcp_on: bool
    relay_vlan_id: int | None


@dataclass
class Network:
    """Every VLAN, IPv4 subnet and reservation boot knows about."""

    vlans: dict[int, VlanView] = field(default_factory=dict)
    subnets: dict[int, SubnetView] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)  # by MAC
    loaded: bool = False

    # -- questions the DHCP engine asks -------------------------------------------------

    def serves(self, vlan_id: int) -> bool:
        """DHCP is on for the VLAN, or the VLAN relays to one where it is."""
        vlan = self.vlans.get(vlan_id)
        if vlan is None:
            return False
        if vlan.relay_vlan_id is not None:
            target = self.vlans.get(vlan.relay_vlan_id)
            return target is not None and target.dhcp_on
        return vlan.dhcp_on

    def subnet_holding(self, ip: str) -> SubnetView | None:
        """The known subnet the address is in (a linear scan: a site has few subnets)."""
        address = ipaddress.IPv4Address(ip)
        for subnet in self.subnets.values():
            if address in subnet.network:
                return subnet
        return None

    def shared_network(self, subnet: SubnetView) -> list[SubnetView]:
        """The managed subnets of the subnet's VLAN, that subnet first: leases may come
        from any of them (ISC's shared-network)."""
        others = [
            s
            for s in self.subnets.values()
            if s.vlan_id == subnet.vlan_id and s.id != subnet.id and s.managed
        ]
        return [subnet, *sorted(others, key=lambda s: s.id)]

    def mtu(self, subnet: SubnetView) -> int | None:
        """The MTU of the subnet's VLAN."""
        vlan = self.vlans.get(subnet.vlan_id)
        return vlan.mtu if vlan is not None else None

    # -- keeping it current ---------------------------------------------------------------

    def load(self, config: ipam.DhcpConfig) -> None:
        """Take ipam's snapshot: the served VLANs' subnets, ranges and reservations are
        replaced by it; VLANs and subnets learnt from events stay."""
        for item in config.vlans:
            self._vlan(item.vlan)
            for dhcp_subnet in item.subnets:
                subnet = self._subnet(dhcp_subnet.subnet)
                if subnet is None:
                    continue
                subnet.ranges = {
                    r.id: _span(r.start_ip, r.end_ip) for r in dhcp_subnet.dynamic_ranges
                }
                for mac, res in list(self.reservations.items()):
                    if res.subnet_id == subnet.id:
                        del self.reservations[mac]
                for r in dhcp_subnet.reservations:
                    self.reservations[r.mac] = Reservation(
                        r.address_id, r.ip, r.mac, r.hostname, subnet.id
                    )
        self.loaded = True

    def apply(self, payload: Any) -> bool:
        """Apply one ipam event payload; returns True when a VLAN started being served
        (its subnets may be missing here: the caller fetches a fresh snapshot)."""
        match payload:
            case ipam.VlanCreated(vlan=vlan) | ipam.VlanUpdated(vlan=vlan):
                was = self.serves(vlan.id)
                self._vlan(vlan)
                return not was and self.serves(vlan.id)
            case ipam.VlanDeleted(vlan=vlan):
                self.vlans.pop(vlan.id, None)
            case ipam.SubnetCreated(subnet=subnet) | ipam.SubnetUpdated(subnet=subnet):
                self._subnet(subnet)
            case ipam.SubnetDeleted(subnet=subnet):
                self.subnets.pop(subnet.id, None)
                for mac, res in list(self.reservations.items()):
                    if res.subnet_id == subnet.id:
                        del self.reservations[mac]
            case ipam.IpRangeCreated(range=r) | ipam.IpRangeUpdated(range=r):
                held = self.subnets.get(r.subnet_id)
                if held is not None:
                    if r.type is ipam.IpRangeType.DYNAMIC:
                        held.ranges[r.id] = _span(r.start_ip, r.end_ip)
                    else:
                        held.ranges.pop(r.id, None)
            case ipam.IpRangeDeleted(range=r):
                held = self.subnets.get(r.subnet_id)
                if held is not None:
                    held.ranges.pop(r.id, None)
            case ipam.AddressAllocated(address=a):
                reserved = a.alloc_type.value in _RESERVATION_TYPES
                if a.mac and reserved and a.subnet_id in self.subnets:
                    self.reservations[a.mac] = Reservation(
                        a.id, a.ip, a.mac, a.hostname, a.subnet_id
                    )
            case ipam.AddressReleased(address=a):
                held_res = self.reservations.get(a.mac or "")
                if held_res is not None and held_res.address_id == a.id:
                    del self.reservations[held_res.mac]
        return False

    def _vlan(self, vlan: ipam.Vlan) -> None:
        self.vlans[vlan.id] = VlanView(vlan.id, vlan.mtu, vlan.dhcp_on, vlan.relay_vlan_id)

    def _subnet(self, subnet: ipam.Subnet) -> SubnetView | None:
        if subnet.ip_version != 4:
            return None  # DHCPv4 only
        old = self.subnets.get(subnet.id)
        view = SubnetView(
            id=subnet.id,
            network=ipaddress.IPv4Network(subnet.cidr),
            vlan_id=subnet.vlan_id,
            gateway=subnet.gateway_ip,
            dns_servers=list(subnet.dns_servers),
            ntp_servers=list(subnet.ntp_servers),
            domain=subnet.domain,
            managed=subnet.managed,
            disabled_boot_architectures=frozenset(subnet.disabled_boot_architectures),
            ranges=old.ranges if old is not None else {},
        )
        self.subnets[subnet.id] = view
        return view


def _span(start: str, end: str) -> tuple[int, int]:
    return int(ipaddress.IPv4Address(start)), int(ipaddress.IPv4Address(end))
