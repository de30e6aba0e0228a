"""Raw packet sockets: listening on an interface, and sending ARP requests on it.

An AF_PACKET socket bound to one interface sees every frame on it. It is non-blocking and
read through the event loop's reader integration (``loop.add_reader``): each wake-up
drains what is queued, decides each frame in memory and returns; nothing blocks the loop.

The kernel usually takes the 802.1Q tag off a received frame and hands it over beside the
frame (``PACKET_AUXDATA``); :func:`frames.parse` also reads a tag left in the frame.
Frames this host sent (``PACKET_OUTGOING``) are skipped: they say nothing about neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter

from metalbus.shared.metrics import ServiceMetrics

from .frames import (
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    MalformedFrame,
    NameSighting,
    Sighting,
)
from .frames import parse as parse_frame

log = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SOL_PACKET = getattr(socket, "SOL_PACKET", 263)
PACKET_AUXDATA = 8
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 0x10
_AUXDATA = struct.Struct("IIIHHHH")  # struct tpacket_auxdata
_WANTED = frozenset(
    t.to_bytes(2, "big") for t in (ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD)
)
READ_BURST = 512  # frames read per wake-up before other work gets the loop again


class CaptureMetrics:
    """What the listeners count, on the service's ``/metrics``."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        registry = metrics.registry
        self.frames = Counter(
            "metalbus_discovery_frames",
            "Frames read by kind (arp_request, arp_reply, arp_gratuitous, ndp_ns, ndp_na, mdns, "
            "ignored: another protocol or nothing to learn, malformed)",
            ["interface", "kind"],
            registry=registry,
        ).labels
        self.malformed = Counter(
            "metalbus_discovery_malformed_frames",
            "Frames dropped because they claim ARP, NDP or mDNS and are not, by reason",
            ["reason"],
            registry=registry,
        ).labels
        self.events = Counter(
            "metalbus_discovery_neighbour_events",
            "Neighbour events decided (new, refreshed, moved)",
            ["event"],
            registry=registry,
        ).labels


def interface_mac(name: str) -> bytes:
    """The interface's MAC address.

    Raises:
        OSError: no such interface.
    """
    text = Path(f"/sys/class/net/{name}/address").read_text().strip()
    return bytes.fromhex(text.replace(":", ""))


def set_receive_buffer(sock: socket.socket, size: int) -> None:
    """A receive queue of ``size`` bytes: a burst of frames waits there while the loop is
    busy. SO_RCVBUFFORCE (root, CAP_NET_ADMIN) goes past ``net.core.rmem_max``, which is
    about 200 KiB by default (a few hundred small frames); without the right, SO_RCVBUF
    gets what the limit allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def open_packet_socket(interface: str, protocol: int = ETH_P_ALL) -> socket.socket:
    """A non-blocking AF_PACKET socket bound to ``interface``, with VLAN tags as auxdata.

    Raises:
        OSError: no such interface, or no right to open raw sockets (CAP_NET_RAW).
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
    try:
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        set_receive_buffer(sock, 4 * 1024 * 1024)
        sock.bind((interface, protocol))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _vid(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
            status, _, _, _, _, tci, _ = _AUXDATA.unpack_from(data)
            if status & TP_STATUS_VLAN_VALID or tci:
                return int(tci) & 0x0FFF
    return None


class Listener:
    """Reads one interface's frames into sightings, through the loop's reader."""

    def __init__(
        self,
        interface: str,
        on_sighting: Callable[[str, Sighting], None],
        metrics: CaptureMetrics,
        on_name: Callable[[str, NameSighting], None] | None = None,
    ) -> None:
        self.interface = interface
        self.on_sighting = on_sighting
        self.on_name = on_name
        self.metrics = metrics
        self.sock: socket.socket | None = None
        self._ignored = metrics.frames(interface, "ignored")
        self._malformed = metrics.frames(interface, "malformed")
        self._kinds: dict[str, Counter] = {}  # the counter of each kind, looked up once

    def start(self) -> None:
        """Open the socket and start reading (raises OSError as :func:`open_packet_socket`)."""
        self.sock = open_packet_socket(self.interface)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def stop(self) -> None:
        """Stop reading and close the socket."""
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        space = socket.CMSG_SPACE(_AUXDATA.size)
        for _ in range(READ_BURST):
            try:
                data, ancdata, _flags, address = sock.recvmsg(65535, space)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the interface went away: say so, keep the service up
                log.warning("reading %s failed: %s", self.interface, exc)
                return
            if address[2] == PACKET_OUTGOING:
                continue
            self.frame(data, _vid(ancdata))

    def frame(self, data: bytes, vid: int | None) -> None:
        """Decide one received frame (also the entry point of the ingest benchmark)."""
        if data[12:14] not in _WANTED:
            self._ignored.inc()
            return
        try:
            sightings = parse_frame(data, vid)
        except MalformedFrame as exc:
            self._malformed.inc()
            self.metrics.malformed(exc.reason).inc()
            return
        if not sightings:
            self._ignored.inc()
            return
        kind = sightings[0].kind
        counter = self._kinds.get(kind)
        if counter is None:
            counter = self._kinds[kind] = self.metrics.frames(self.interface, kind)
        counter.inc()
        for sighting in sightings:
            if isinstance(sighting, Sighting):
                self.on_sighting(self.interface, sighting)
            elif self.on_name is not None:
                self.on_name(self.interface, sighting)
