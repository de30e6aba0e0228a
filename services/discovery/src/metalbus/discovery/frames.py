"""Ethernet frames to sightings: ARP, NDP and mDNS answers, with 802.1Q tags.

Pure functions of bytes, so they can be fed anything (the property tests feed them random
bytes). :func:`parse` answers:

- a list of :class:`Sighting` (an address answered by a MAC) for ARP requests, replies and
  gratuitous ARP, and for IPv6 neighbour solicitations and advertisements;
- a list of :class:`NameSighting` (a ``.local`` host name for an address) for mDNS
  responses (UDP 5353, IPv4 or IPv6) carrying A or AAAA records;
- an empty list for frames that are well formed but tell nothing (another protocol, an
  ARP probe from 0.0.0.0, a duplicate-address-detection solicitation from ``::``);
- :class:`MalformedFrame` (with a short ``reason`` used as a metric label) for frames that
  claim to be ARP, NDP or mDNS and are not.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from dataclasses import dataclass

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
_TAGS = (ETH_P_8021Q, ETH_P_8021AD)
ICMPV6 = 58
UDP = 17
MDNS_PORT = 5353
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")
NDP_NS = 135
NDP_NA = 136
OPT_SOURCE_LL = 1
OPT_TARGET_LL = 2
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6


class MalformedFrame(ValueError):
    """A frame that claims to be ARP or NDP but cannot be one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Sighting:
    """An address answered by a MAC, in one frame."""

    ip: str
    mac: str
    vid: int | None
    kind: str  # arp_request, arp_reply, arp_gratuitous, ndp_ns, ndp_na


@dataclass(frozen=True)
class NameSighting:
    """A host name announced for an address (mDNS), in one frame."""

    ip: str
    hostname: str
    vid: int | None
    kind: str = "mdns"


def mac_text(raw: bytes) -> str:
    """Six bytes as ``aa:bb:cc:dd:ee:ff``."""
    return raw.hex(":")


def usable_mac(raw: bytes) -> bool:
    """A unicast, non-zero MAC (the multicast bit clear): one a host can own."""
    return len(raw) == 6 and raw != ZERO_MAC and not raw[0] & 1


def parse(frame: bytes, vid: int | None = None) -> list[Sighting | NameSighting]:
    """The sightings in one Ethernet frame.

    Args:
        frame: the frame from the destination MAC on (as an AF_PACKET socket gives it).
        vid: the VLAN id the kernel took off the frame (PACKET_AUXDATA), if any; a tag
            still in the frame wins over it.

    Raises:
        MalformedFrame: the frame claims ARP or NDP and is not.
    """
    if len(frame) < 14:
        return []  # a runt: nothing claims to be ARP yet
    src = frame[6:12]
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    offset = 14
    depth = 0
    while ethertype in _TAGS:
        depth += 1
        if depth > 2 or len(frame) < offset + 4:
            raise MalformedFrame("vlan_tag")
        tci, ethertype = struct.unpack_from("!HH", frame, offset)
        if depth == 1 or vid is None:
            vid = tci & 0x0FFF  # the outer tag names the VLAN (QinQ: the service tag)
        offset += 4
    if vid == 0:
        vid = None  # priority-tagged: untagged as far as VLANs go
    if ethertype == ETH_P_ARP:
        return list(_arp(frame[offset:], src, vid))
    if ethertype == ETH_P_IPV6:
        return _ipv6(frame[offset:], src, vid)
    if ethertype == ETH_P_IP:
        return list(_ipv4(frame[offset:], vid))
    return []


def _ipv4(packet: bytes, vid: int | None) -> list[NameSighting]:
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != UDP:
        return []
    header = (packet[0] & 0x0F) * 4
    (total,) = struct.unpack_from("!H", packet, 2)
    if header < 20 or total < header or (struct.unpack_from("!H", packet, 6)[0] & 0x3FFF):
        return []  # a bad header or a fragment: not something we read
    return _udp(packet[header:total], vid)


def _udp(datagram: bytes, vid: int | None) -> list[NameSighting]:
    if len(datagram) < 8:
        return []
    source, dest, length = struct.unpack_from("!HHH", datagram)
    if dest != MDNS_PORT or source != MDNS_PORT:
        return []
    if length < 8 or length > len(datagram):
        raise MalformedFrame("udp_length")
    return mdns_names(datagram[8:length], vid)


def mdns_names(message: bytes, vid: int | None = None) -> list[NameSighting]:
    """The host names for addresses in an mDNS response (A and AAAA records of ``.local``
    names; a record with TTL 0 says goodbye and is left out).

    Raises:
        MalformedFrame: a response that runs past its end or loops.
    """
    if len(message) < 12:
        raise MalformedFrame("mdns_short")
    flags, questions, answers, authority, additional = struct.unpack_from("!2xHHHHH", message)
    if not flags & 0x8000:
        return []  # a query
    offset = 12
    for _ in range(questions):
        _, offset = _name(message, offset)
        offset += 4
    found: list[NameSighting] = []
    for _ in range(answers + authority + additional):
        name, offset = _name(message, offset)
        if offset + 10 > len(message):
            raise MalformedFrame("mdns_short")
        kind, _cls, ttl, size = struct.unpack_from("!HHIH", message, offset)
        offset += 10
        data = message[offset : offset + size]
        if len(data) != size:
            raise MalformedFrame("mdns_short")
        offset += size
        host = _hostname(name)
        if ttl == 0 or host is None:
            continue
        if kind == 1 and size == 4:
            found.append(NameSighting(str(ipaddress.IPv4Address(data)), host, vid))
        elif kind == 28 and size == 16:
            found.append(NameSighting(str(ipaddress.IPv6Address(data)), host, vid))
    return found


def _name(message: bytes, offset: int) -> tuple[str, int]:
    """A (possibly compressed) DNS name at ``offset``, and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    for _ in range(64):  # a pointer loop is malformed, not endless
        if offset >= len(message):
            raise MalformedFrame("mdns_name")
        size = message[offset]
        if size == 0:
            return ".".join(labels), end if end is not None else offset + 1
        if size & 0xC0 == 0xC0:
            if offset + 1 >= len(message):
                raise MalformedFrame("mdns_name")
            if end is None:
                end = offset + 2
            offset = ((size & 0x3F) << 8) | message[offset + 1]
            continue
        if size > 63 or offset + 1 + size > len(message):
            raise MalformedFrame("mdns_name")
        labels.append(message[offset + 1 : offset + 1 + size].decode("latin-1"))
        offset += 1 + size
    raise MalformedFrame("mdns_name")


def _hostname(name: str) -> str | None:
    """``host.local`` as ``host``; None for service names and anything not a host name."""
    labels = name.split(".")
    if len(labels) < 2 or labels[-1].lower() != "local":
        return None
    labels = labels[:-1]
    if not all(_LABEL.match(label) for label in labels) or any("_" in x for x in labels):
        return None
    return ".".join(labels).lower()


def _arp(body: bytes, src: bytes, vid: int | None) -> list[Sighting]:
    if len(body) < 8:
        raise MalformedFrame("arp_short")
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", body)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        raise MalformedFrame("arp_not_ethernet_ipv4")
    if len(body) < 28:
        raise MalformedFrame("arp_short")
    if op not in (1, 2):
        raise MalformedFrame("arp_op")
    sha, spa, _tha, tpa = body[8:14], body[14:18], body[18:24], body[24:28]
    if not usable_mac(sha):
        raise MalformedFrame("arp_sender_mac")
    if spa == b"\x00\x00\x00\x00":
        return []  # an ARP probe (RFC 5227): the sender has no address yet
    # Multicast (224/4), loopback (127/8) or broadcast: no host answers as that. Tested on
    # the first byte rather than through ipaddress: this runs for every ARP frame.
    if 224 <= spa[0] <= 239 or spa[0] == 127 or spa == b"\xff\xff\xff\xff":
        raise MalformedFrame("arp_sender_ip")
    kind = "arp_gratuitous" if spa == tpa else ("arp_request" if op == 1 else "arp_reply")
    return [Sighting(socket.inet_ntoa(spa), mac_text(sha), vid, kind)]


def _ipv6(packet: bytes, src: bytes, vid: int | None) -> list[Sighting | NameSighting]:
    if len(packet) < 40:
        return []  # not even an IPv6 header: not NDP, nothing to say
    if packet[0] >> 4 != 6:
        return []
    (payload_len,) = struct.unpack_from("!H", packet, 4)
    next_header, hop_limit = packet[6], packet[7]
    body = packet[40 : 40 + payload_len]
    if next_header == UDP:
        return list(_udp(body, vid))
    if next_header != ICMPV6:
        return []  # other traffic (or extension headers, which NDP never carries)
    return list(_ndp(body, src, vid, hop_limit, packet[8:24]))


def _ndp(body: bytes, src: bytes, vid: int | None, hop_limit: int, src_ip: bytes) -> list[Sighting]:
    if len(body) < 4:
        raise MalformedFrame("icmpv6_short")
    icmp_type, code = body[0], body[1]
    if icmp_type not in (NDP_NS, NDP_NA):
        return []
    if hop_limit != 255 or code != 0:
        raise MalformedFrame("ndp_not_on_link")  # RFC 4861 7.1.1: drop
    if len(body) < 24:
        raise MalformedFrame("ndp_short")
    target = ipaddress.IPv6Address(body[8:24])
    if target.is_multicast:
        raise MalformedFrame("ndp_target")
    options = _options(body[24:])
    if icmp_type == NDP_NA:
        mac = options.get(OPT_TARGET_LL, src)
        if not usable_mac(mac):
            raise MalformedFrame("ndp_mac")
        return [Sighting(str(target), mac_text(mac), vid, "ndp_na")]
    source = ipaddress.IPv6Address(src_ip)
    if source.is_unspecified:
        return []  # duplicate address detection: the sender does not own an address yet
    mac = options.get(OPT_SOURCE_LL, src)
    if not usable_mac(mac):
        raise MalformedFrame("ndp_mac")
    return [Sighting(str(source), mac_text(mac), vid, "ndp_ns")]


def _options(raw: bytes) -> dict[int, bytes]:
    """NDP options (RFC 4861 4.6): link-layer addresses by option type."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + 2 <= len(raw):
        kind, units = raw[offset], raw[offset + 1]
        if units == 0:
            raise MalformedFrame("ndp_option_length")  # RFC 4861: must be discarded
        end = offset + units * 8
        if end > len(raw):
            raise MalformedFrame("ndp_option_length")
        if kind in (OPT_SOURCE_LL, OPT_TARGET_LL) and units == 1:
            found[kind] = raw[offset + 2 : offset + 8]
        offset = end
    return found


def arp_request(
    sender_mac: bytes, sender_ip: ipaddress.IPv4Address, target_ip: ipaddress.IPv4Address
) -> bytes:
    """A broadcast ARP request asking who has ``target_ip`` (padded to 60 bytes)."""
    frame = (
        BROADCAST_MAC
        + sender_mac
        + struct.pack("!HHHBBH", ETH_P_ARP, 1, 0x0800, 6, 4, 1)
        + sender_mac
        + sender_ip.packed
        + ZERO_MAC
        + target_ip.packed
    )
    return frame.ljust(60, b"\x00")
