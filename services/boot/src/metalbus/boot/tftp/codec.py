"""TFTP packets (RFC 1350, options RFC 2347): ``parse`` and ``build``.

``parse`` raises nothing but :class:`MalformedPacket`, whatever the bytes: a packet from the
network is either one of the dataclasses below or dropped and counted by the caller.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum


class Opcode(IntEnum):
    """The first two bytes of every packet."""

    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(IntEnum):
    """ERROR packet codes (RFC 1350 and 2347's 8)."""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8


class MalformedPacket(ValueError):
    """The bytes are not a TFTP packet this codec understands."""


@dataclass(frozen=True)
class Request:
    """A read (RRQ) or write (WRQ) request; option names lower-cased (they are case-blind)."""

    opcode: Opcode
    filename: str
    mode: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Data:
    """One block of a file (block numbers are 16 bits and wrap)."""

    block: int
    payload: bytes


@dataclass(frozen=True)
class Ack:
    """The receiver has every block up to ``block`` (0: the OACK)."""

    block: int


@dataclass(frozen=True)
class Error:
    """The transfer is over: ``code`` and a message for humans."""

    code: int
    message: str


@dataclass(frozen=True)
class OptionAck:
    """The options the server accepts (RFC 2347)."""

    options: dict[str, str]


Packet = Request | Data | Ack | Error | OptionAck

_HEAD = struct.Struct("!HH")
MAX_STRING = 512  # longer names or option values are not TFTP (and not a PXE client)


def _strings(body: bytes) -> list[str]:
    if not body.endswith(b"\x00"):
        raise MalformedPacket("strings not NUL-terminated")
    parts = body[:-1].split(b"\x00")
    try:
        texts = [part.decode("ascii") for part in parts]
    except UnicodeDecodeError as exc:
        raise MalformedPacket("non-ASCII string") from exc
    if any(len(text) > MAX_STRING for text in texts):
        raise MalformedPacket("string too long")
    return texts


def _options(pairs: list[str]) -> dict[str, str]:
    if len(pairs) % 2:
        raise MalformedPacket("option without a value")
    options: dict[str, str] = {}
    for name, value in zip(pairs[::2], pairs[1::2], strict=True):
        if not name:
            raise MalformedPacket("empty option name")
        options.setdefault(name.lower(), value)  # RFC 2347: the first one counts
    return options


def parse(data: bytes) -> Packet:
    """Decode one datagram.

    Raises:
        MalformedPacket: too short, unknown opcode, or strings that are not NUL-terminated
            ASCII.
    """
    if len(data) < 4:
        raise MalformedPacket("shorter than 4 bytes")
    opcode, second = _HEAD.unpack_from(data)
    if opcode in (Opcode.RRQ, Opcode.WRQ):
        texts = _strings(data[2:])
        if len(texts) < 2 or not texts[0] or not texts[1]:
            raise MalformedPacket("request without file name or mode")
        return Request(Opcode(opcode), texts[0], texts[1].lower(), _options(texts[2:]))
    if opcode == Opcode.DATA:
        return Data(second, bytes(data[4:]))
    if opcode == Opcode.ACK:
        if len(data) != 4:
            raise MalformedPacket("ACK of the wrong length")
        return Ack(second)
    if opcode == Opcode.ERROR:
        texts = _strings(data[4:]) if len(data) > 4 else [""]
        if len(texts) != 1:
            raise MalformedPacket("ERROR with more than one message")
        return Error(second, texts[0])
    if opcode == Opcode.OACK:
        return OptionAck(_options(_strings(data[2:])))
    raise MalformedPacket(f"unknown opcode {opcode}")


def _z(text: str) -> bytes:
    return text.encode("ascii") + b"\x00"


def build(packet: Packet) -> bytes:
    """Encode one packet (the inverse of :func:`parse`)."""
    if isinstance(packet, Data):
        return _HEAD.pack(Opcode.DATA, packet.block) + packet.payload
    if isinstance(packet, Ack):
        return _HEAD.pack(Opcode.ACK, packet.block)
    if isinstance(packet, Error):
        return _HEAD.pack(Opcode.ERROR, packet.code) + _z(packet.message)
    if isinstance(packet, OptionAck):
        body = b"".join(_z(k) + _z(v) for k, v in packet.options.items())
        return struct.pack("!H", Opcode.OACK) + body
    body = _z(packet.filename) + _z(packet.mode)
    body += b"".join(_z(k) + _z(v) for k, v in packet.options.items())
    return struct.pack("!H", packet.opcode) + body


def data_header(block: int) -> bytes:
    """The 4 bytes before a DATA payload (the hot path builds packets without a dataclass)."""
    return _HEAD.pack(Opcode.DATA, block & 0xFFFF)
