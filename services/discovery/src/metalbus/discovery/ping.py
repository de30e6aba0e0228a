"""ICMP echo for scans of subnets that are not directly attached (a ping sweep).

No ARP crosses a router, so a routed subnet is swept with echo requests through a raw
ICMP socket (the service has CAP_NET_RAW for its packet sockets anyway). Requests carry
the scan's identifier; a raw socket receives every echo reply reaching the host, so only
replies with that identifier, from an address of the scanned subnet, count.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
from dataclasses import dataclass

from .capture import set_receive_buffer

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
SOL_RAW = 255
ICMP_FILTER = 1  # linux/icmp.h: a mask of ICMP types this socket does not receive
PAYLOAD = b"metalbus discovery ping sweep"


@dataclass(frozen=True)
class Route:
    """A route of the host's main table: where packets to ``network`` go."""

    network: ipaddress.IPv4Network
    dev: str
    gateway: str | None


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(identifier: int, sequence: int) -> bytes:
    """An ICMP echo request (type 8) with its checksum."""
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, identifier, sequence)
    total = checksum(header + PAYLOAD)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, total, identifier, sequence) + PAYLOAD


def echo_reply_source(packet: bytes, identifier: int) -> ipaddress.IPv4Address | None:
    """The sender of an IPv4 packet read from a raw ICMP socket, when it is an echo reply
    to ``identifier`` with a correct checksum; None for anything else."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header = (packet[0] & 0x0F) * 4
    message = packet[header:]
    if len(message) < 8 or checksum(message) != 0:
        return None
    kind, code, _, ident, _ = struct.unpack_from("!BBHHH", message)
    if kind != ICMP_ECHO_REPLY or code != 0 or ident != identifier:
        return None
    return ipaddress.IPv4Address(packet[12:16])


def open_icmp_socket(interface: str) -> socket.socket:
    """A non-blocking raw ICMP socket sending through ``interface``, receiving echo replies only.

    Raises:
        OSError: no right to raw sockets (CAP_NET_RAW), or no such interface.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        # Every other ICMP type is filtered out in the kernel: a busy host's traffic does
        # not reach this socket's queue.
        sock.setsockopt(
            SOL_RAW, ICMP_FILTER, struct.pack("I", 0xFFFFFFFF & ~(1 << ICMP_ECHO_REPLY))
        )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        set_receive_buffer(sock, 1024 * 1024)  # every answer of a large subnet at once
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def parse_routes(text: str | bytes) -> list[Route]:
    """Routes of ``ip -j -4 route show`` output (the default route left out)."""
    found = []
    for item in json.loads(text or b"[]"):
        dst = item.get("dst")
        if not dst or dst == "default" or "dev" not in item:
            continue
        network = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32")
        found.append(Route(network, item["dev"], item.get("gateway")))
    return found
