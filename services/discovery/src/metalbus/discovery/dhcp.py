"""Rogue DHCP detection: a DHCPDISCOVER on an interface, and who offers an address.

The probe broadcasts one DISCOVER (broadcast flag set, so every server broadcasts its
OFFER back) from a UDP socket on port 68 bound to the interface, and collects OFFERs for
``dhcp_probe_wait_s``. A server whose identifier is not one of metalbus's own
(``dhcp_known_servers``) is reported: the ``discovery.dhcp.server_seen`` event, and the VLAN
of the interface's subnet gets ``external_dhcp`` in ipam. Nothing is ever requested or
accepted: an OFFER is only read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import struct
from dataclasses import dataclass

from metalbus.shared.bus import Bus
from metalbus.shared.contract import ipam
from metalbus.shared.contract.discovery import (
    DhcpProbe,
    DhcpProbeResult,
    DhcpServerFound,
    DhcpServerSeen,
)
from metalbus.shared.errors import ValidationFailed
from metalbus.shared.events import new_event, utcnow

from .capture import interface_mac
from .neighbours import NeighbourTable
from .settings import DiscoverySettings

log = logging.getLogger(__name__)

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER = 1, 2
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s")  # op ... chaddr (236 bytes with sname, file)


class MalformedReply(ValueError):
    """A datagram on port 68 that is not a DHCP reply."""


@dataclass(frozen=True)
class Offer:
    """One OFFER: who offered what, for which probe."""

    xid: int
    server_id: str
    offered_ip: str


def build_discover(xid: int, mac: bytes) -> bytes:
    """A DHCPDISCOVER with the broadcast flag, asking for the mask, router and DNS."""
    header = _HEADER.pack(
        1, 1, 6, 0, xid, 0, 0x8000, b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac.ljust(16, b"\0")
    )
    options = bytes([53, 1, DISCOVER, 55, 3, 1, 3, 6, 255])
    return (header + b"\0" * 192 + MAGIC + options).ljust(300, b"\0")


def parse_offer(data: bytes) -> Offer | None:
    """The OFFER in a datagram; None for any other DHCP message.

    Raises:
        MalformedReply: not a DHCP reply at all, or its options run past the end.
    """
    if len(data) < 240 or data[236:240] != MAGIC:
        raise MalformedReply("not a DHCP message")
    op, _htype, _hlen, _hops, xid, _secs, _flags, _ci, yiaddr, siaddr, _gi, _ch = (
        _HEADER.unpack_from(data)
    )
    if op != 2:
        return None
    kind: int | None = None
    server: bytes | None = None
    offset = 240
    while offset < len(data):
        code = data[offset]
        if code == 255:
            break
        if code == 0:
            offset += 1
            continue
        if offset + 2 > len(data) or offset + 2 + data[offset + 1] > len(data):
            raise MalformedReply("options run past the end")
        value = data[offset + 2 : offset + 2 + data[offset + 1]]
        if code == 53 and len(value) == 1:
            kind = value[0]
        elif code == 54 and len(value) == 4:
            server = value
        offset += 2 + len(value)
    if kind != OFFER:
        return None
    return Offer(
        xid,
        str(ipaddress.IPv4Address(server or siaddr)),
        str(ipaddress.IPv4Address(yiaddr)),
    )


def _socket(interface: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        sock.bind(("0.0.0.0", port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class DhcpProber:
    """Probes interfaces for DHCP servers and reports the ones that are not metalbus."""

    def __init__(self, settings: DiscoverySettings, bus: Bus, table: NeighbourTable) -> None:
        self.settings = settings
        self.bus = bus
        self.table = table
        self.known = {str(ipaddress.ip_address(a)) for a in settings.dhcp_known_servers}

    async def probe(self, request: DhcpProbe) -> DhcpProbeResult:
        """``dhcp_probe``: one DISCOVER on the interface, the OFFERs it drew."""
        interface = request.interface or next(iter(self.settings.interfaces), None)
        if interface is None:
            raise ValidationFailed(
                "name an interface (the service listens on none)", field="interface"
            )
        try:
            mac = interface_mac(interface)
            sock = _socket(interface, self.settings.dhcp_client_port)
        except OSError as exc:
            message = f"cannot probe on {interface}: {exc}"
            raise ValidationFailed(message, field="interface") from exc
        loop = asyncio.get_running_loop()
        xid = int.from_bytes(os.urandom(4), "big")
        received: list[bytes] = []

        def readable() -> None:
            while True:
                try:
                    received.append(sock.recv(4096))
                except OSError:  # drained (BlockingIOError), or an error to ignore here
                    return

        # The loop's reader, not sock_recvfrom: uvloop (the services' loop) lacks it.
        loop.add_reader(sock.fileno(), readable)
        try:
            destination = ("255.255.255.255", self.settings.dhcp_server_port)
            sock.sendto(build_discover(xid, mac), destination)
            await asyncio.sleep(self.settings.dhcp_probe_wait_s)  # the window OFFERs count in
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()
        offers: dict[str, Offer] = {}
        for data in received:
            with contextlib.suppress(MalformedReply):
                offer = parse_offer(data)
                if offer is not None and offer.xid == xid:
                    offers.setdefault(offer.server_id, offer)
        seen = []
        for offer in offers.values():
            server = self._seen(interface, offer)
            if server.external:
                server = server.model_copy(update={"vlan_id": await self._report(server)})
            seen.append(server)
        return DhcpProbeResult(interface=interface, servers=seen)

    def _seen(self, interface: str, offer: Offer) -> DhcpServerSeen:
        mac = next(
            (
                e.mac
                for (name, _vid, address), e in self.table.entries.items()
                if name == interface and address == offer.server_id
            ),
            None,
        )
        return DhcpServerSeen(
            interface=interface,
            server_ip=offer.server_id,
            server_mac=mac,
            offered_ip=offer.offered_ip,
            external=offer.server_id not in self.known,
            seen_at=utcnow(),
        )

    async def _report(self, server: DhcpServerSeen) -> int | None:
        """The event, and ``external_dhcp`` on the VLAN of the subnet holding the server."""
        vlan_id: int | None = None
        try:
            page = await self.bus.request(
                ipam.SUBNET_LIST, ipam.SubnetQuery(contains=server.server_ip)
            )
            if page.items:
                vlan_id = page.items[0].vlan_id
                vlan = await self.bus.request(ipam.VLAN_GET, ipam.ById(id=vlan_id))
                if vlan.external_dhcp != server.server_ip:
                    update = ipam.UpdateRequest[ipam.VlanUpdate](
                        id=vlan_id, changes=ipam.VlanUpdate(external_dhcp=server.server_ip)
                    )
                    await self.bus.request(ipam.VLAN_UPDATE, update)
        except Exception as exc:  # the event still goes out; ipam hears of it next probe
            log.warning("could not mark external DHCP %s in ipam: %s", server.server_ip, exc)
        # A fact about the wire, not a database change: published directly (a lost one is
        # found again by the next probe).
        payload = DhcpServerFound(
            interface=server.interface,
            server_ip=server.server_ip,
            server_mac=server.server_mac,
            offered_ip=server.offered_ip,
            vlan_id=vlan_id,
            seen_at=server.seen_at,
        )
        try:
            await self.bus.publish(new_event(payload, subject=server.server_ip))
        except Exception as exc:
            log.warning("dhcp.server_seen for %s not published: %s", server.server_ip, exc)
        return vlan_id

    async def scheduled(self) -> None:
        """Probe every listened interface every ``dhcp_probe_interval_s``."""
        while True:
            for interface in self.settings.interfaces:
                try:
                    await self.probe(DhcpProbe(interface=interface))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("DHCP probe on %s failed: %s", interface, exc)
            await asyncio.sleep(self.settings.dhcp_probe_interval_s)  # deliberate interval
