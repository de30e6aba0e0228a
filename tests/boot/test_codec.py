"""The DHCPv4 codec: known packets, round trips, and arbitrary bytes (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metalbus.boot.dhcp.codec import (
    MAGIC_COOKIE,
    MalformedPacket,
    MessageType,
    Opt,
    Packet,
    build,
    parse,
)

ip = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
field_bytes = st.binary(max_size=64).map(lambda b: b.rstrip(b"\x00"))
option_codes = st.integers(1, 254).filter(lambda c: c != Opt.OVERLOAD)
packets = st.builds(
    Packet,
    op=st.sampled_from([1, 2]),
    htype=st.integers(0, 255),
    hops=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1),
    secs=st.integers(0, 2**16 - 1),
    flags=st.integers(0, 2**16 - 1),
    ciaddr=ip,
    yiaddr=ip,
    siaddr=ip,
    giaddr=ip,
    chaddr=st.binary(max_size=16),
    sname=field_bytes,
    file=st.binary(max_size=128).map(lambda b: b.rstrip(b"\x00")),
    options=st.dictionaries(option_codes, st.binary(min_size=1, max_size=600), max_size=12),
)


@settings(max_examples=400, deadline=None)
@given(packets)
def test_build_then_parse_is_the_same_packet(packet: Packet) -> None:
    assert parse(build(packet)) == packet


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=700))
def test_random_bytes_raise_only_the_codecs_error(data: bytes) -> None:
    try:
        parse(data)
    except MalformedPacket:
        pass


@settings(max_examples=1000, deadline=None)
@given(packets, st.data())
def test_damaged_packets_raise_only_the_codecs_error(packet: Packet, data: st.DataObject) -> None:
    """Truncate, flip bytes in, or extend a real packet: parse answers or says malformed."""
    wire = bytearray(build(packet))
    cut = data.draw(st.integers(0, len(wire)))
    del wire[cut:]
    for _ in range(data.draw(st.integers(0, 8))):
        if wire:
            wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    wire += data.draw(st.binary(max_size=40))
    try:
        parsed = parse(bytes(wire))
    except MalformedPacket:
        return
    # Whatever parses must read back through the typed accessors without error.
    _ = (parsed.message_type, parsed.mac, parsed.client_arch, parsed.user_classes)
    _ = (parsed.ip_option(Opt.REQUESTED_IP), parsed.text_option(Opt.HOSTNAME))


def test_a_discover_with_pxe_options_reads_back() -> None:
    raw = build(
        Packet(
            xid=0x1234,
            flags=0x8000,
            chaddr=bytes.fromhex("525400123456"),
            options={
                Opt.MESSAGE_TYPE: bytes((MessageType.DISCOVER,)),
                Opt.PARAMETER_REQUEST_LIST: bytes((1, 3, 6, 15, 26, 42, 66, 67)),
                Opt.VENDOR_CLASS: b"PXEClient:Arch:00007:UNDI:003016",
                Opt.CLIENT_ARCH: b"\x00\x07",
                Opt.CLIENT_NDI: b"\x01\x03\x10",
                Opt.CLIENT_UUID: b"\x00" + bytes(range(16)),
                Opt.USER_CLASS: b"\x04iPXE",
                Opt.RELAY_AGENT_INFO: b"\x01\x04eth0\x02\x02ab",
                Opt.CLIENT_ID: b"\x01\x52\x54\x00\x12\x34\x56",
            },
        )
    )
    assert len(raw) >= 300 and raw[236:240] == MAGIC_COOKIE
    p = parse(raw)
    assert p.message_type is MessageType.DISCOVER
    assert p.mac == "52:54:00:12:34:56"
    assert p.broadcast
    assert p.client_arch == 7
    assert p.user_classes == [b"iPXE"]
    assert p.options[Opt.RELAY_AGENT_INFO] == b"\x01\x04eth0\x02\x02ab"
    assert p.parameter_requests == bytes((1, 3, 6, 15, 26, 42, 66, 67))


def test_ipxe_user_class_without_rfc3004_framing_is_one_class() -> None:
    assert Packet(options={Opt.USER_CLASS: b"iPXE"}).user_classes == [b"iPXE"]


def test_options_in_the_file_field_are_read_when_overloaded() -> None:
    file_area = bytes((Opt.MESSAGE_TYPE, 1, MessageType.REQUEST, Opt.END))
    raw = bytearray(build(Packet(options={Opt.OVERLOAD: b"\x01"})))
    raw[108 : 108 + len(file_area)] = file_area
    p = parse(bytes(raw))
    assert p.message_type is MessageType.REQUEST and p.file == b""


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:100],  # too short
        lambda b: b[:236] + b"\x00\x00\x00\x00" + b[240:],  # no cookie
        lambda b: b[:240] + bytes((Opt.HOSTNAME, 50, 65)),  # option past the end
        lambda b: bytes((3,)) + b[1:],  # op 3
        lambda b: b[:2] + bytes((17,)) + b[3:],  # hlen 17
        lambda b: b[:240] + bytes((Opt.OVERLOAD, 1, 7, 255)),  # bad overload
    ],
)
def test_malformed_packets_are_refused(damage) -> None:  # type: ignore[no-untyped-def]
    good = build(Packet(options={Opt.MESSAGE_TYPE: b"\x01"}))
    with pytest.raises(MalformedPacket):
        parse(damage(good))
