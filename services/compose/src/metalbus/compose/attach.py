"""MAAS's rules for where a composed VM's interfaces attach on the host.

With interface constraints (correlated hosts only): the host interfaces whose mapped
addresses satisfy every constraint of the entry; a bridge attaches as ``<interface
type='bridge'>``, anything else via macvtap (``<interface type='direct'>``) in the entry's
``mode`` or the host's ``default_macvlan_mode``. Preference: bridge, then bond, then
physical, then VLAN interface; by name within a kind.

Without constraints:

- KVM deployed by metalbus: libvirt's ``maas`` and ``default`` networks are skipped unless
  metalbus DHCP serves them. First a host bridge on a VLAN where metalbus DHCP is on, then
  a served ``maas``, then a served ``default`` network, then macvtap on a bond, physical or
  VLAN interface on such a VLAN. The VM boots from the network.
- KVM installed by hand: the libvirt network ``maas``, else ``default``. Network boot only
  when metalbus DHCP serves that network. When libvirt's own DHCP is on there, a warning
  says PXE will not work and names the two fixes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from metalbus.shared.contract.compose import (
    AttachmentType,
    HostInterface,
    HostInterfaceType,
    HostOrigin,
    InterfaceLink,
    LibvirtNetwork,
    MacvlanMode,
)
from metalbus.shared.errors import Conflict, ValidationFailed

from .specs import InterfaceSpec

PREFERENCE = {
    HostInterfaceType.BRIDGE: 0,
    HostInterfaceType.BOND: 1,
    HostInterfaceType.PHYSICAL: 2,
    HostInterfaceType.VLAN: 3,
}
LIBVIRT_NETWORKS = ("maas", "default")


@dataclass(frozen=True)
class Attachment:
    """Where one VM interface goes."""

    label: str
    attach_type: AttachmentType
    source: str
    mode: MacvlanMode | None = None
    ip: str | None = None


@dataclass
class HostNetworking:
    """What the rules need to know about a host and metalbus's network."""

    name: str
    origin: HostOrigin
    correlated: bool
    default_macvlan_mode: MacvlanMode
    interfaces: list[HostInterface]
    networks: list[LibvirtNetwork]
    dhcp_vlans: set[int] = field(default_factory=set)
    served_networks: set[str] = field(default_factory=set)
    spaces: dict[str, int] = field(default_factory=dict)
    fabrics: dict[str, int] = field(default_factory=dict)


@dataclass
class Plan:
    """The interfaces of one VM, whether it boots from the network, and warnings."""

    attachments: list[Attachment]
    network_boot: bool
    warnings: list[str]


def _ordered(interfaces: list[HostInterface]) -> list[HostInterface]:
    return sorted(interfaces, key=lambda i: (PREFERENCE[i.type], i.name))


def _attach(
    iface: HostInterface, host: HostNetworking, label: str, mode: MacvlanMode | None = None
) -> Attachment:
    if iface.type is HostInterfaceType.BRIDGE:
        return Attachment(label, AttachmentType.BRIDGE, iface.name)
    return Attachment(label, AttachmentType.MACVLAN, iface.name, mode or host.default_macvlan_mode)


def _by_name_or_id(value: str, names: dict[str, int], what: str, label: str) -> int:
    if value.isdigit():
        return int(value)
    if value not in names:
        raise ValidationFailed(
            f"interfaces entry {label!r}: no {what} named {value!r}", field="interfaces"
        )
    return names[value]


def _link_matches(
    link: InterfaceLink, spec: InterfaceSpec, space: int | None, fabric: int | None
) -> bool:
    if spec.subnet is not None:
        if spec.subnet.isdigit():
            if link.subnet_id != int(spec.subnet):
                return False
        elif link.cidr != spec.subnet:
            return False
    if space is not None and link.space_id != space:
        return False
    if fabric is not None and link.fabric_id != fabric:
        return False
    if spec.vlan is not None and link.vlan_id != spec.vlan:
        return False
    if spec.vid is not None and link.vid != spec.vid:
        return False
    if spec.ip is not None:
        if link.cidr is None:
            return False
        if ipaddress.ip_address(spec.ip) not in ipaddress.ip_network(link.cidr):
            return False
    return True


def _describe(spec: InterfaceSpec) -> str:
    return ",".join(f"{k}={getattr(spec, k)}" for k in spec.given)


def constrained(host: HostNetworking, specs: list[InterfaceSpec]) -> Plan:
    """The attachments asked for by interface constraints.

    Raises:
        ValidationFailed: on ``interfaces``: the host is not correlated, or no host
            interface matches an entry (the entry is named).
    """
    if not host.correlated:
        raise ValidationFailed(
            f"host {host.name} is not correlated with anything metalbus knows (none of its "
            "addresses is an address of a machine or device in ipam), so its interfaces are "
            "not mapped to VLANs, subnets and spaces and interface constraints cannot be "
            "met: compose without them, or register the host's address",
            field="interfaces",
        )
    attachments = []
    for spec in specs:
        space = (
            _by_name_or_id(spec.space, host.spaces, "space", spec.label)
            if spec.space is not None
            else None
        )
        fabric = (
            _by_name_or_id(spec.fabric, host.fabrics, "fabric", spec.label)
            if spec.fabric is not None
            else None
        )
        needs_link = any(
            v is not None for v in (spec.subnet, space, fabric, spec.vlan, spec.vid, spec.ip)
        )
        match = None
        for iface in _ordered(host.interfaces):
            if spec.name is not None and iface.name != spec.name:
                continue
            is_bridge = iface.type is HostInterfaceType.BRIDGE
            if spec.type is AttachmentType.BRIDGE and not is_bridge:
                continue
            if spec.type is AttachmentType.MACVLAN and is_bridge:
                continue
            if spec.mode is not None and is_bridge:
                continue
            if needs_link and not any(
                _link_matches(link, spec, space, fabric) for link in iface.links
            ):
                continue
            match = iface
            break
        if match is None:
            raise ValidationFailed(
                f"interfaces entry {spec.label!r} ({_describe(spec)}): no interface of host "
                f"{host.name} matches",
                field="interfaces",
            )
        attachment = _attach(match, host, spec.label, spec.mode)
        attachments.append(
            Attachment(
                attachment.label,
                attachment.attach_type,
                attachment.source,
                attachment.mode,
                spec.ip,
            )
        )
    return Plan(attachments, network_boot=True, warnings=[])


def unconstrained(host: HostNetworking) -> Plan:
    """The one interface of a VM composed without constraints (rules in the module doc).

    Raises:
        Conflict: on ``interfaces``, when the host has nowhere the rules allow.
    """
    networks = {n.name: n for n in host.networks}
    if host.origin is HostOrigin.DEPLOYED:
        on_dhcp = [
            i
            for i in _ordered(host.interfaces)
            if any(link.vlan_id in host.dhcp_vlans for link in i.links)
        ]
        for iface in on_dhcp:
            if iface.type is HostInterfaceType.BRIDGE:
                return Plan([_attach(iface, host, "eth0")], True, [])
        for name in LIBVIRT_NETWORKS:
            if name in networks and name in host.served_networks:
                return Plan([Attachment("eth0", AttachmentType.NETWORK, name)], True, [])
        for iface in on_dhcp:
            return Plan([_attach(iface, host, "eth0")], True, [])
        raise Conflict(
            f"host {host.name} (KVM deployed by metalbus) has no bridge or interface on a VLAN "
            "where metalbus DHCP is on, and its libvirt networks maas and default are not "
            "served by metalbus DHCP: turn DHCP on for the VLAN of one of its interfaces",
            field="interfaces",
        )
    for name in LIBVIRT_NETWORKS:
        if name in networks:
            net = networks[name]
            served = name in host.served_networks
            warnings = []
            if net.dhcp:
                warnings.append(
                    f"libvirt's own DHCP is on for the network {name!r} on host {host.name}: "
                    "PXE will not work there. Either turn libvirt's DHCP off for that network "
                    "and metalbus DHCP on for its VLAN, or create a libvirt network named "
                    "'maas' on a VLAN where metalbus DHCP is on."
                )
            if not served:
                warnings.append(
                    f"metalbus DHCP does not serve the network {name!r} on host {host.name}: "
                    "the VM will not boot from the network."
                )
            return Plan([Attachment("eth0", AttachmentType.NETWORK, name)], served, warnings)
    raise Conflict(
        f"host {host.name} (KVM installed by hand) has no libvirt network named maas or "
        "default: create a 'maas' network on a VLAN where metalbus DHCP is on",
        field="interfaces",
    )
