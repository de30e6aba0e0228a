"""The frame parsers: known ARP and NDP frames, tags, and anything at all (property tests)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from metalbus.discovery.capture import CaptureMetrics, Listener
from metalbus.discovery.frames import (
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IPV6,
    MalformedFrame,
    NameSighting,
    Sighting,
    arp_request,
    mdns_names,
    parse,
)

HOST_MAC = bytes.fromhex("525400123456")
OTHER_MAC = bytes.fromhex("525400abcdef")
BROADCAST = b"\xff" * 6


def arp(op: int, sha: bytes, spa: str, tpa: str, tha: bytes = b"\x00" * 6) -> bytes:
    return (
        struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
        + sha
        + ipaddress.IPv4Address(spa).packed
        + tha
        + ipaddress.IPv4Address(tpa).packed
    )


def ether(payload: bytes, ethertype: int, *vids: int, src: bytes = HOST_MAC) -> bytes:
    """A broadcast frame; two VLAN ids make a QinQ frame (service tag outside)."""
    head = BROADCAST + src
    tpids = (ETH_P_8021AD, ETH_P_8021Q) if len(vids) > 1 else (ETH_P_8021Q,)
    for tpid, vid in zip(tpids[: len(vids)], vids, strict=True):
        head += struct.pack("!HH", tpid, vid)
    return head + struct.pack("!H", ethertype) + payload


def icmpv6(src: str, icmp: bytes, hop_limit: int = 255) -> bytes:
    header = struct.pack("!IHBB", 6 << 28, len(icmp), 58, hop_limit)
    return (
        header + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address("ff02::1").packed + icmp
    )


def ndp(kind: int, target: str, option: int | None, mac: bytes = HOST_MAC) -> bytes:
    body = struct.pack("!BBHI", kind, 0, 0, 0) + ipaddress.IPv6Address(target).packed
    if option is not None:
        body += bytes([option, 1]) + mac
    return body


class Seen:
    def __init__(self) -> None:
        self.sightings: list[Sighting] = []

    def __call__(self, interface: str, sighting: Sighting) -> None:
        self.sightings.append(sighting)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()


def listener() -> tuple[Listener, Seen, CollectorRegistry]:
    holder = _Metrics()
    seen = Seen()
    return Listener("eth-test", seen, CaptureMetrics(holder)), seen, holder.registry  # type: ignore[arg-type]


def test_arp_request_reply_gratuitous_and_probe() -> None:
    request = ether(arp(1, HOST_MAC, "10.0.0.5", "10.0.0.1"), ETH_P_ARP)
    assert parse(request) == [Sighting("10.0.0.5", "52:54:00:12:34:56", None, "arp_request")]
    reply = ether(arp(2, OTHER_MAC, "10.0.0.1", "10.0.0.5", HOST_MAC), ETH_P_ARP, src=OTHER_MAC)
    assert parse(reply) == [Sighting("10.0.0.1", "52:54:00:ab:cd:ef", None, "arp_reply")]
    gratuitous = ether(arp(1, HOST_MAC, "10.0.0.7", "10.0.0.7"), ETH_P_ARP)
    assert parse(gratuitous)[0].kind == "arp_gratuitous"
    probe = ether(arp(1, HOST_MAC, "0.0.0.0", "10.0.0.9"), ETH_P_ARP)
    assert parse(probe) == []
    # What a scan sends parses as the request it is (and is padded to the minimum frame).
    ours = arp_request(
        HOST_MAC, ipaddress.IPv4Address("10.0.0.2"), ipaddress.IPv4Address("10.0.0.3")
    )
    assert len(ours) == 60
    assert parse(ours) == [Sighting("10.0.0.2", "52:54:00:12:34:56", None, "arp_request")]


def test_vlan_tags_in_the_frame_and_beside_it() -> None:
    tagged = ether(arp(2, HOST_MAC, "10.0.42.5", "10.0.42.1"), ETH_P_ARP, 42)
    assert parse(tagged)[0].vid == 42
    assert parse(tagged, vid=7)[0].vid == 42  # a tag in the frame wins over auxdata
    plain = ether(arp(2, HOST_MAC, "10.0.42.5", "10.0.42.1"), ETH_P_ARP)
    assert parse(plain, vid=42)[0].vid == 42  # the kernel took the tag off
    assert parse(plain, vid=0)[0].vid is None  # priority-tagged: untagged
    qinq = ether(arp(2, HOST_MAC, "10.0.42.5", "10.0.42.1"), ETH_P_ARP, 100, 42)
    assert parse(qinq)[0].vid == 100  # the outer (service) tag names the VLAN


def test_ndp_solicitations_and_advertisements() -> None:
    ns = icmpv6("fd00::5", ndp(135, "fd00::1", 1))
    assert parse(ether(ns, ETH_P_IPV6)) == [
        Sighting("fd00::5", "52:54:00:12:34:56", None, "ndp_ns")
    ]
    dad = icmpv6("::", ndp(135, "fd00::5", None))
    assert parse(ether(dad, ETH_P_IPV6)) == []
    na = icmpv6("fd00::1", ndp(136, "fd00::1", 2, OTHER_MAC))
    assert parse(ether(na, ETH_P_IPV6, 5)) == [
        Sighting("fd00::1", "52:54:00:ab:cd:ef", 5, "ndp_na")
    ]
    # Without the link-layer option the frame's source MAC is the answer.
    bare = icmpv6("fd00::1", ndp(136, "fd00::1", None))
    assert parse(ether(bare, ETH_P_IPV6))[0].mac == "52:54:00:12:34:56"
    echo = icmpv6("fd00::1", struct.pack("!BBHI", 128, 0, 0, 0))
    assert parse(ether(echo, ETH_P_IPV6)) == []


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (ether(arp(1, HOST_MAC, "10.0.0.5", "10.0.0.1")[:20], ETH_P_ARP), "arp_short"),
        (
            ether(b"\x00\x06" + arp(1, HOST_MAC, "10.0.0.5", "10.0.0.1")[2:], ETH_P_ARP),
            "arp_not_ethernet_ipv4",
        ),
        (ether(arp(9, HOST_MAC, "10.0.0.5", "10.0.0.1"), ETH_P_ARP), "arp_op"),
        (ether(arp(1, BROADCAST, "10.0.0.5", "10.0.0.1"), ETH_P_ARP), "arp_sender_mac"),
        (ether(arp(1, b"\x00" * 6, "10.0.0.5", "10.0.0.1"), ETH_P_ARP), "arp_sender_mac"),
        (ether(arp(1, HOST_MAC, "224.0.0.1", "10.0.0.1"), ETH_P_ARP), "arp_sender_ip"),
        (BROADCAST + HOST_MAC + b"\x81\x00\x00", "vlan_tag"),
        (
            ether(icmpv6("fd00::1", ndp(136, "fd00::1", 2), hop_limit=64), ETH_P_IPV6),
            "ndp_not_on_link",
        ),
        (ether(icmpv6("fd00::1", ndp(136, "fd00::1", 2)[:20]), ETH_P_IPV6), "ndp_short"),
        (ether(icmpv6("fd00::1", ndp(136, "ff02::1", 2)), ETH_P_IPV6), "ndp_target"),
        (
            ether(
                icmpv6("fd00::1", ndp(136, "fd00::1", None) + b"\x02\x00" + b"\x00" * 6), ETH_P_IPV6
            ),
            "ndp_option_length",
        ),
        (ether(icmpv6("fd00::1", ndp(136, "fd00::1", 2, BROADCAST)), ETH_P_IPV6), "ndp_mac"),
    ],
)
def test_malformed_frames_are_dropped_and_counted(frame: bytes, reason: str) -> None:
    with pytest.raises(MalformedFrame) as caught:
        parse(frame)
    assert caught.value.reason == reason
    read, seen, registry = listener()
    read.frame(frame, None)
    assert seen.sightings == []
    assert (
        registry.get_sample_value("metalbus_discovery_malformed_frames_total", {"reason": reason})
        == 1
    )
    counted = {"interface": "eth-test", "kind": "malformed"}
    assert registry.get_sample_value("metalbus_discovery_frames_total", counted) == 1


def test_other_protocols_are_ignored_not_malformed() -> None:
    read, seen, registry = listener()
    read.frame(ether(b"\x45" + b"\x00" * 40, 0x0800), None)
    read.frame(b"\x00" * 10, None)
    assert seen.sightings == []
    ignored = {"interface": "eth-test", "kind": "ignored"}
    assert registry.get_sample_value("metalbus_discovery_frames_total", ignored) == 2


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=200), st.one_of(st.none(), st.integers(0, 4095)))
def test_random_bytes_never_crash(frame: bytes, vid: int | None) -> None:
    try:
        found = parse(frame, vid)
    except MalformedFrame as exc:
        assert exc.reason
        return
    for sighting in found:
        ipaddress.ip_address(sighting.ip)
        assert len(sighting.mac) == 17


_ETHERTYPES = st.sampled_from([ETH_P_ARP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD])


@settings(max_examples=3000, deadline=None)
@given(st.binary(min_size=12, max_size=12), _ETHERTYPES, st.binary(max_size=120))
def test_random_bodies_behind_arp_and_ndp_ethertypes_never_crash(
    head: bytes, ethertype: int, body: bytes
) -> None:
    """Random bytes rarely reach past the ethertype; these always claim ARP, NDP or a tag."""
    read, _seen, _registry = listener()
    read.frame(head + struct.pack("!H", ethertype) + body, None)
    frame = ether(icmpv6("fd00::1", bytes([136, 0]) + body), ETH_P_IPV6)
    read.frame(frame, None)
    read.frame(ether(struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + body, ETH_P_ARP), None)


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


def mdns_response(host: str = "peer-host.local", ipv4: str = "10.213.9.10") -> bytes:
    """An announcement: A for the host, AAAA by a pointer to the same name, a service PTR."""
    header = struct.pack("!HHHHHH", 0, 0x8400, 0, 2, 0, 1)
    a_record = dns_name(host) + struct.pack("!HHIH", 1, 0x8001, 120, 4)
    a_record += ipaddress.IPv4Address(ipv4).packed
    ptr = dns_name("_http._tcp.local") + struct.pack("!HHIH", 12, 1, 120, 2) + b"\xc0\x0c"
    aaaa = b"\xc0\x0c" + struct.pack("!HHIH", 28, 0x8001, 120, 16)
    aaaa += ipaddress.IPv6Address("fd00:213:9::10").packed
    return header + a_record + ptr + aaaa


def test_mdns_announcements_name_their_addresses() -> None:
    assert mdns_names(mdns_response()) == [
        NameSighting("10.213.9.10", "peer-host", None),
        NameSighting("fd00:213:9::10", "peer-host", None),
    ]
    query = bytearray(mdns_response())
    query[2:4] = b"\x00\x00"
    assert mdns_names(bytes(query)) == []
    goodbye = mdns_response().replace(
        struct.pack("!HHIH", 1, 0x8001, 120, 4), struct.pack("!HHIH", 1, 0x8001, 0, 4)
    )
    assert [n.ip for n in mdns_names(goodbye)] == ["fd00:213:9::10"]
    assert mdns_names(mdns_response(host="printer.example")) == []  # not .local
    looped = struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c"
    with pytest.raises(MalformedFrame) as caught:
        mdns_names(looped)
    assert caught.value.reason == "mdns_name"
    with pytest.raises(MalformedFrame):
        mdns_names(mdns_response()[:-5])


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_random_mdns_messages_never_crash(message: bytes) -> None:
    for candidate in (message, mdns_response()[:12] + message):
        try:
            for found in mdns_names(candidate):
                ipaddress.ip_address(found.ip)
        except MalformedFrame:
            pass
