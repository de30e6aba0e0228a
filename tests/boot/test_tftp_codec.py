"""The TFTP codec and option negotiation: round trips, and arbitrary bytes (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metalbus.boot.tftp.codec import (
    Ack,
    Data,
    Error,
    MalformedPacket,
    Opcode,
    OptionAck,
    Request,
    build,
    parse,
)
from metalbus.boot.tftp.files import Refused, safe_relative
from metalbus.boot.tftp.options import negotiate

text = st.text(st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=40)
name = text.map(str.lower)
options = st.dictionaries(name, st.text(st.characters(min_codepoint=1, max_codepoint=127)))
packets = st.one_of(
    st.builds(Request, st.sampled_from([Opcode.RRQ, Opcode.WRQ]), text, name, options),
    st.builds(Data, st.integers(0, 65535), st.binary(max_size=1500)),
    st.builds(Ack, st.integers(0, 65535)),
    st.builds(
        Error, st.integers(0, 65535), st.text(st.characters(min_codepoint=1, max_codepoint=127))
    ),
    st.builds(OptionAck, st.dictionaries(name, text, min_size=1)),
)


@settings(max_examples=500, deadline=None)
@given(packets)
def test_build_then_parse_is_the_same_packet(packet: object) -> None:
    assert parse(build(packet)) == packet  # type: ignore[arg-type]


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_the_codecs_error(data: bytes) -> None:
    try:
        parse(data)
    except MalformedPacket:
        pass


@settings(max_examples=1000, deadline=None)
@given(packets, st.data())
def test_damaged_packets_raise_only_the_codecs_error(packet: object, data: st.DataObject) -> None:
    wire = bytearray(build(packet))  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(wire)))
    wire = wire[:cut] if data.draw(st.booleans()) else wire
    for _ in range(data.draw(st.integers(0, 4))):
        if wire:
            wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    wire += data.draw(st.binary(max_size=8))
    try:
        parse(bytes(wire))
    except MalformedPacket:
        pass


def test_known_packets() -> None:
    rrq = b"\x00\x01pxelinux.0\x00octet\x00BLKSIZE\x001468\x00tsize\x000\x00blksize\x009\x00"
    assert parse(rrq) == Request(
        Opcode.RRQ, "pxelinux.0", "octet", {"blksize": "1468", "tsize": "0"}
    )
    assert parse(b"\x00\x04\xff\xff") == Ack(65535)
    assert parse(b"\x00\x05\x00\x01") == Error(1, "")
    for bad in (b"\x00\x04\x00", b"\x00\x04\x00\x01\x00", b"\x00\x07\x00\x00", b"\x00\x01a\x00"):
        with pytest.raises(MalformedPacket):
            parse(bad)


def test_negotiation() -> None:
    p = negotiate(
        {"blksize": "1468", "timeout": "3", "tsize": "0", "windowsize": "16", "x": "1"},
        1000,
        default_timeout_s=1.0,
    )
    assert (p.blksize, p.timeout_s, p.windowsize) == (1468, 3.0, 16)
    assert p.accepted == {"blksize": "1468", "timeout": "3", "tsize": "1000", "windowsize": "16"}
    big = negotiate({"blksize": "70000", "windowsize": "500"}, 0, default_timeout_s=1.0)
    assert (big.blksize, big.windowsize) == (65464, 64)
    refused = negotiate(
        {"blksize": "7", "timeout": "0", "windowsize": "0", "b": "x"}, 0, default_timeout_s=2.0
    )
    assert refused.accepted is None and (refused.blksize, refused.timeout_s) == (512, 2.0)


@pytest.mark.parametrize(
    ("requested", "relative"),
    [("pxelinux.0", "pxelinux.0"), ("/grub//x.cfg", "grub/x.cfg"), ("a\\b", "a/b"), ("./a", "a")],
)
def test_names_are_relative_to_the_root(requested: str, relative: str) -> None:
    assert safe_relative(requested) == relative


@pytest.mark.parametrize("requested", ["../etc/passwd", "a/../../x", "..\\x", "a\x01b", "/"])
def test_unsafe_names_are_refused(requested: str) -> None:
    with pytest.raises(Refused):
        safe_relative(requested)
