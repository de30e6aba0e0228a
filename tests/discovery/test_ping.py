"""The ping sweep's pure parts: echo requests, replies, and the routes read from ``ip``."""

from __future__ import annotations

import ipaddress
import json
import struct

from hypothesis import given
from hypothesis import strategies as st

from metalbus.discovery.ping import (
    ICMP_ECHO_REPLY,
    Route,
    checksum,
    echo_reply_source,
    echo_request,
    parse_routes,
)

SOURCE = ipaddress.IPv4Address("10.213.20.10")


def reply_to(request: bytes, source: ipaddress.IPv4Address = SOURCE) -> bytes:
    """An IPv4 packet carrying the echo reply a host makes of ``request``."""
    body = bytes([ICMP_ECHO_REPLY, 0, 0, 0]) + request[4:]
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(body),
        0,
        0,
        64,
        1,
        0,
        source.packed,
        bytes([10, 213, 9, 1]),
    )
    return header + body


def test_an_echo_request_checks_out_and_its_reply_names_the_sender() -> None:
    request = echo_request(0xBEEF, 7)
    assert request[0] == 8 and checksum(request) == 0
    assert struct.unpack_from("!HH", request, 4) == (0xBEEF, 7)
    assert echo_reply_source(reply_to(request), 0xBEEF) == SOURCE


def test_replies_to_other_identifiers_requests_or_damaged_ones_do_not_count() -> None:
    packet = reply_to(echo_request(0xBEEF, 7))
    assert echo_reply_source(packet, 0xBEEE) is None  # another scan's (or ping's) reply
    assert echo_reply_source(packet[:20] + b"\x08" + packet[21:], 0xBEEF) is None  # a request
    damaged = packet[:-1] + bytes([packet[-1] ^ 0xFF])
    assert echo_reply_source(damaged, 0xBEEF) is None  # checksum
    assert echo_reply_source(packet[:24], 0xBEEF) is None  # cut short


@given(st.binary(max_size=128), st.integers(0, 0xFFFF))
def test_any_bytes_are_a_reply_or_nothing(packet: bytes, identifier: int) -> None:
    found = echo_reply_source(packet, identifier)
    assert found is None or found == ipaddress.IPv4Address(packet[12:16])


def test_routes_leave_the_default_route_and_routes_without_a_device_out() -> None:
    text = json.dumps(
        [
            {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
            {"dst": "10.213.20.0/24", "gateway": "10.213.9.2", "dev": "veth0"},
            {"dst": "10.213.9.0/24", "dev": "veth0", "scope": "link"},
            {"dst": "10.213.30.7", "dev": "veth1"},
            {"type": "unreachable", "dst": "10.213.40.0/24"},
        ]
    )
    assert parse_routes(text) == [
        Route(ipaddress.IPv4Network("10.213.20.0/24"), "veth0", "10.213.9.2"),
        Route(ipaddress.IPv4Network("10.213.9.0/24"), "veth0", None),
        Route(ipaddress.IPv4Network("10.213.30.7/32"), "veth1", None),
    ]
