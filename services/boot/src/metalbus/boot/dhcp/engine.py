"""The DHCP server's decisions (RFC 2131 section 4.3), from memory and without I/O.

:meth:`Engine.handle` takes one request and the interface it came in on and returns a
:class:`Decision`: the reply (if any), the lease to make durable before the reply may leave,
the lease that ended, and a PXE request from a MAC nobody reserved. The socket side
(:mod:`metalbus.boot.dhcp.server`) carries it out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from ..settings import BootSettings
from .codec import (
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    ZERO_IP,
    MessageType,
    Opt,
    Packet,
    u16,
    u32,
)
from .codec import ips as ip_bytes
from .leases import Lease, LeaseTable, renewed
from .network import Network, SubnetView
from .pxe import BootMethod, boot_method, boot_options, is_network_boot

EndReason = Literal["released", "declined", "expired"]


@dataclass(frozen=True)
class Interface:
    """An interface DHCP listens on and its IPv4 address (the server identifier there)."""

    name: str
    address: str


@dataclass(frozen=True)
class PxeSeen:
    """A network-booting client whose MAC has no reservation (an unknown machine)."""

    mac: str
    arch: int | None
    method: str | None
    subnet: SubnetView | None
    relay_ip: str | None
    client_uuid: str | None
    vendor_class: str | None


@dataclass
class Decision:
    """What to do about one request."""

    reply: Packet | None = None
    commit: Lease | None = None  # persist this lease before the reply leaves
    previous: Lease | None = None  # what ``commit`` replaced in memory (to undo on failure)
    ended: list[tuple[Lease, EndReason]] = field(default_factory=list)
    pxe: PxeSeen | None = None
    dropped: str | None = None  # why nothing is sent (a metric label)


def client_key(packet: Packet) -> str:
    """Option 61 when the client sends one, else its MAC (RFC 2131 4.2)."""
    client_id = packet.options.get(Opt.CLIENT_ID)
    return f"id:{client_id.hex()}" if client_id else f"mac:{packet.mac}"


class Engine:
    """Full-mode or proxy-mode DHCP over a :class:`Network` and a :class:`LeaseTable`."""

    def __init__(self, settings: BootSettings, network: Network, leases: LeaseTable) -> None:
        self.settings = settings
        self.network = network
        self.leases = leases

    def handle(self, packet: Packet, iface: Interface, now: float) -> Decision:
        """Decide the answer to ``packet``, received on ``iface`` at UNIX time ``now``."""
        if packet.op != BOOTREQUEST:
            return Decision(dropped="not_a_request")
        if packet.htype != 1 or len(packet.chaddr) != 6:
            return Decision(dropped="not_ethernet")
        kind = packet.message_type
        if kind is None:
            return Decision(dropped="no_message_type")
        if self.settings.dhcp_mode == "proxy":
            return self._proxy(packet, kind, iface)
        if not self.network.loaded:
            return Decision(dropped="not_loaded")
        relayed = packet.giaddr != ZERO_IP
        subnet = self.network.subnet_holding(packet.giaddr if relayed else iface.address)
        if subnet is None or not self.network.serves(subnet.vlan_id):
            return Decision(dropped="not_served")
        shared = [s for s in self.network.shared_network(subnet) if s.managed]
        match kind:
            case MessageType.DISCOVER:
                return self._discover(packet, iface, shared, now)
            case MessageType.REQUEST:
                return self._request(packet, iface, shared, now)
            case MessageType.DECLINE:
                return self._decline(packet, shared, now)
            case MessageType.RELEASE:
                return self._release(packet)
            case MessageType.INFORM:
                return self._inform(packet, iface, subnet)
        return Decision(dropped="unexpected_type")

    # -- the messages ------------------------------------------------------------------

    def _discover(
        self, packet: Packet, iface: Interface, shared: list[SubnetView], now: float
    ) -> Decision:
        key = client_key(packet)
        ip = self._choose(packet, key, shared, now)
        pxe = self._pxe_seen(packet, shared[0])
        if ip is None:
            return Decision(dropped="exhausted", pxe=pxe)
        self.leases.offer(ip, key, now + self.settings.offer_hold_s)
        reply = self._answer(packet, MessageType.OFFER, iface, ip, shared)
        return Decision(reply=reply, pxe=pxe)

    def _request(
        self, packet: Packet, iface: Interface, shared: list[SubnetView], now: float
    ) -> Decision:
        key = client_key(packet)
        server_id = packet.ip_option(Opt.SERVER_ID)
        requested = packet.ip_option(Opt.REQUESTED_IP)
        if server_id is not None:  # SELECTING: the client picked one server's offer
            if server_id != iface.address:
                self.leases.withdraw_offer(key)
                return Decision(dropped="chose_another_server")
            wanted = requested or packet.ciaddr
        elif requested is not None:  # INIT-REBOOT: checking a remembered address
            wanted = requested
        elif packet.ciaddr != ZERO_IP:  # RENEWING (unicast) or REBINDING (broadcast)
            wanted = packet.ciaddr
        else:
            return Decision(dropped="request_without_address")
        value = int(ipaddress.IPv4Address(wanted))
        if not self._may_lease(packet, key, value, shared, now):
            return Decision(reply=self._nak(packet, iface, f"{wanted} is not yours"))
        subnet = next(s for s in shared if s.holds(value))
        expires = now + self._lease_time(packet)
        hostname = packet.text_option(Opt.HOSTNAME)
        current = self.leases.of_client(key)
        if current is not None and current.ip == value:
            lease = renewed(current, expires, hostname)
        else:
            client_id = packet.options.get(Opt.CLIENT_ID)
            lease = Lease(
                ip=value,
                mac=packet.mac,
                client_key=key,
                subnet_id=subnet.id,
                expires=expires,
                hostname=hostname,
                client_id=client_id.hex() if client_id else None,
            )
        previous = self.leases.put(lease)
        ended: list[tuple[Lease, EndReason]] = []
        if previous is not None and previous.ip != lease.ip:
            ended.append((previous, "released"))  # the client moved to another address
        reply = self._answer(packet, MessageType.ACK, iface, value, shared)
        return Decision(
            reply=reply,
            commit=lease,
            previous=previous,
            ended=ended,
            pxe=self._pxe_seen(packet, subnet),
        )

    def _decline(self, packet: Packet, shared: list[SubnetView], now: float) -> Decision:
        wanted = packet.ip_option(Opt.REQUESTED_IP)
        if wanted is None:
            return Decision(dropped="decline_without_address")
        value = int(ipaddress.IPv4Address(wanted))
        if any(s.in_dynamic_range(value) for s in shared):
            self.leases.decline(value, now + self.settings.decline_hold_s)
        lease = self.leases.of_client(client_key(packet))
        if lease is None or lease.ip != value:
            return Decision(dropped="decline_unknown_lease")
        self.leases.drop(lease)
        return Decision(ended=[(lease, "declined")], dropped="no_reply_needed")

    def _release(self, packet: Packet) -> Decision:
        lease = self.leases.of_client(client_key(packet))
        if lease is None or lease.ip_text != packet.ciaddr:
            return Decision(dropped="release_unknown_lease")
        self.leases.drop(lease)
        return Decision(ended=[(lease, "released")], dropped="no_reply_needed")

    def _inform(self, packet: Packet, iface: Interface, subnet: SubnetView) -> Decision:
        # RFC 2131 3.4: configuration only, no address and no lease time.
        own = self.network.subnet_holding(packet.ciaddr) if packet.ciaddr != ZERO_IP else None
        reply = self._answer(packet, MessageType.ACK, iface, None, [own or subnet])
        reply.ciaddr = packet.ciaddr
        return Decision(reply=reply)

    # -- rules -------------------------------------------------------------------------

    def _choose(self, packet: Packet, key: str, shared: list[SubnetView], now: float) -> int | None:
        """The address to offer: the client's reservation, its lease, the address it asks
        for if free, else the next free one."""
        reservation = self.network.reservations.get(packet.mac)
        if reservation is not None and any(s.id == reservation.subnet_id for s in shared):
            return int(ipaddress.IPv4Address(reservation.ip))
        lease = self.leases.of_client(key)
        if lease is not None and self._leasable(lease.ip, key, shared, now):
            return lease.ip
        wanted = packet.ip_option(Opt.REQUESTED_IP)
        if wanted is not None:
            value = int(ipaddress.IPv4Address(wanted))
            if self._leasable(value, key, shared, now):
                return value
        return self.leases.find_free(shared, key, now)

    def _leasable(self, value: int, key: str, shared: list[SubnetView], now: float) -> bool:
        in_range = any(s.in_dynamic_range(value) for s in shared)
        return in_range and self.leases.free_for(value, key, now)

    def _may_lease(
        self, packet: Packet, key: str, value: int, shared: list[SubnetView], now: float
    ) -> bool:
        """The client may hold this address: its reservation, or a free dynamic address
        (metalbus is authoritative on the networks it serves, as MAAS's DHCP is)."""
        reservation = self.network.reservations.get(packet.mac)
        if reservation is not None and any(s.id == reservation.subnet_id for s in shared):
            return int(ipaddress.IPv4Address(reservation.ip)) == value
        return self._leasable(value, key, shared, now)

    def _lease_time(self, packet: Packet) -> int:
        if is_network_boot(packet):
            return self.settings.pxe_lease_time_s
        return self.settings.lease_time_s

    def _pxe_seen(self, packet: Packet, subnet: SubnetView | None) -> PxeSeen | None:
        if not is_network_boot(packet) or packet.mac in self.network.reservations:
            return None
        method = boot_method(packet)
        uuid = packet.options.get(Opt.CLIENT_UUID)
        return PxeSeen(
            mac=packet.mac,
            arch=packet.client_arch,
            method=method.name if method else None,
            subnet=subnet,
            relay_ip=packet.giaddr if packet.giaddr != ZERO_IP else None,
            client_uuid=uuid[1:].hex() if uuid and len(uuid) == 17 else None,
            vendor_class=packet.text_option(Opt.VENDOR_CLASS),
        )

    # -- replies -----------------------------------------------------------------------

    def _reply(self, packet: Packet, kind: MessageType, iface: Interface) -> Packet:
        return Packet(
            op=BOOTREPLY,
            htype=packet.htype,
            xid=packet.xid,
            flags=packet.flags,
            giaddr=packet.giaddr,
            chaddr=packet.chaddr,
            options={Opt.MESSAGE_TYPE: bytes((kind,)), Opt.SERVER_ID: ip_bytes([iface.address])},
        )

    def _answer(
        self,
        packet: Packet,
        kind: MessageType,
        iface: Interface,
        ip: int | None,
        shared: list[SubnetView],
    ) -> Packet:
        """An OFFER or ACK with the subnet's options and, for network boot, boot options."""
        reply = self._reply(packet, kind, iface)
        subnet = shared[0]
        if ip is not None:
            reply.yiaddr = str(ipaddress.IPv4Address(ip))
            subnet = next((s for s in shared if s.holds(ip)), subnet)
            lease_time = self._lease_time(packet)
            reply.options[Opt.LEASE_TIME] = u32(lease_time)
            reply.options[Opt.RENEWAL_TIME] = u32(lease_time // 2)
            reply.options[Opt.REBINDING_TIME] = u32(lease_time * 7 // 8)
        opts = reply.options
        opts[Opt.SUBNET_MASK] = subnet.network.netmask.packed
        opts[Opt.BROADCAST_ADDRESS] = subnet.network.broadcast_address.packed
        if subnet.gateway:
            opts[Opt.ROUTERS] = ip_bytes([subnet.gateway])
        dns = [a for a in subnet.dns_servers if ":" not in a]
        if dns:
            opts[Opt.DNS_SERVERS] = ip_bytes(dns)
        if subnet.domain:
            opts[Opt.DOMAIN_NAME] = subnet.domain.encode()
        mtu = self.network.mtu(subnet)
        if mtu is not None:
            opts[Opt.INTERFACE_MTU] = u16(mtu)
        ntp = [a for a in subnet.ntp_servers if ":" not in a]
        if ntp:
            opts[Opt.NTP_SERVERS] = ip_bytes(ntp)
        reservation = self.network.reservations.get(packet.mac)
        if reservation is not None and reservation.hostname and reply.yiaddr == reservation.ip:
            opts[Opt.HOSTNAME] = reservation.hostname.encode()
        self._boot(packet, reply, iface, subnet.disabled_boot_architectures)
        self._echo_relay_info(packet, reply)
        return reply

    def _boot(
        self,
        packet: Packet,
        reply: Packet,
        iface: Interface,
        disabled: frozenset[str],
        *,
        proxy: bool = False,
    ) -> BootMethod | None:
        """Add the boot options a network-booting client needs, unless its boot method is
        disabled on the subnet; returns the method used."""
        if not is_network_boot(packet):
            return None
        method = boot_method(packet)
        if method is None or method.name in disabled:
            return None
        tftp = str(self.settings.tftp_server or iface.address)
        http = self.settings.http_boot_url.replace("{server}", iface.address)
        boot_options(reply, method, tftp, http, proxy=proxy)
        return method

    def _nak(self, packet: Packet, iface: Interface, why: str) -> Packet:
        reply = self._reply(packet, MessageType.NAK, iface)
        reply.options[Opt.MESSAGE] = why.encode()
        if packet.giaddr != ZERO_IP:
            reply.flags |= BROADCAST_FLAG  # RFC 2131 4.3.2: the relay broadcasts a NAK
        self._echo_relay_info(packet, reply)
        return reply

    @staticmethod
    def _echo_relay_info(packet: Packet, reply: Packet) -> None:
        # RFC 3046 2.2: option 82 goes back to the relay unchanged, as the last option.
        info = packet.options.get(Opt.RELAY_AGENT_INFO)
        if info is not None:
            reply.options[Opt.RELAY_AGENT_INFO] = info

    # -- proxy mode --------------------------------------------------------------------

    def _proxy(self, packet: Packet, kind: MessageType, iface: Interface) -> Decision:
        """Boot information only, beside someone else's DHCP server (dnsmasq's proxy-dhcp):
        answer network-booting clients' DISCOVERs and REQUESTs, with no address."""
        if kind not in (MessageType.DISCOVER, MessageType.REQUEST) or not is_network_boot(packet):
            return Decision(dropped="proxy_not_pxe")
        relayed = packet.giaddr != ZERO_IP
        subnet = self.network.subnet_holding(packet.giaddr if relayed else iface.address)
        answer = MessageType.OFFER if kind is MessageType.DISCOVER else MessageType.ACK
        reply = self._reply(packet, answer, iface)
        disabled = subnet.disabled_boot_architectures if subnet is not None else frozenset()
        if self._boot(packet, reply, iface, disabled, proxy=True) is None:
            return Decision(dropped="proxy_no_boot_method")
        self._echo_relay_info(packet, reply)
        return Decision(reply=reply, pxe=self._pxe_seen(packet, subnet))

    def boot_server(self, packet: Packet, iface: Interface) -> Decision:
        """PXE boot server discovery (port 4011, PXE 2.1 2.2.7): a client that has its
        address by now asks, by unicast REQUEST (or INFORM), for its boot file. Answered as
        dnsmasq's proxy-dhcp does: an ACK with no address, the boot options of the client's
        architecture, its UUID (option 97) echoed, sent back to where it came from."""
        if packet.op != BOOTREQUEST or packet.htype != 1 or len(packet.chaddr) != 6:
            return Decision(dropped="not_a_request")
        if packet.message_type not in (MessageType.REQUEST, MessageType.INFORM):
            return Decision(dropped="boot_server_unexpected_type")
        if not is_network_boot(packet):
            return Decision(dropped="proxy_not_pxe")
        reply = self._reply(packet, MessageType.ACK, iface)
        reply.ciaddr = packet.ciaddr
        subnet = self.network.subnet_holding(iface.address)
        disabled = subnet.disabled_boot_architectures if subnet is not None else frozenset()
        if self._boot(packet, reply, iface, disabled, proxy=True) is None:
            return Decision(dropped="proxy_no_boot_method")
        uuid = packet.options.get(Opt.CLIENT_UUID)
        if uuid is not None:
            reply.options[Opt.CLIENT_UUID] = uuid
        return Decision(reply=reply, pxe=self._pxe_seen(packet, subnet))
