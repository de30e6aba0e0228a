"""DHCPv4 packets (RFC 2131) and their options (RFC 2132): parse and build.

:func:`parse` turns bytes off the wire into a :class:`Packet` or raises
:class:`MalformedPacket`, and nothing else, whatever the bytes: the server drops and
counts such packets. :func:`build` is its inverse. Options stay raw bytes in a
:class:`Packet` (so an unknown option, or option 82 that must be echoed untouched, round
trips as it came); the typed accessors below decode the ones the server reads.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from enum import IntEnum

MAGIC_COOKIE = b"\x63\x82\x53\x63"
_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
FIXED_LEN = _FIXED.size  # 236 bytes before the cookie
MIN_BUILT_LEN = 300  # BOOTP's minimum: some old PXE ROMs drop shorter replies
BROADCAST_FLAG = 0x8000
BOOTREQUEST = 1
BOOTREPLY = 2
ZERO_IP = "0.0.0.0"


class MalformedPacket(ValueError):
    """The bytes are not a DHCPv4 packet this server can read; the packet is dropped."""


class MessageType(IntEnum):
    """Option 53 values."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class Opt(IntEnum):
    """The option codes metalbus reads or writes."""

    PAD = 0
    SUBNET_MASK = 1
    ROUTERS = 3
    DNS_SERVERS = 6
    HOSTNAME = 12
    DOMAIN_NAME = 15
    INTERFACE_MTU = 26
    BROADCAST_ADDRESS = 28
    NTP_SERVERS = 42
    VENDOR_SPECIFIC = 43
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    MAX_MESSAGE_SIZE = 57
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    VENDOR_CLASS = 60
    CLIENT_ID = 61
    TFTP_SERVER_NAME = 66
    BOOTFILE_NAME = 67
    USER_CLASS = 77
    CLIENT_ARCH = 93
    CLIENT_NDI = 94
    CLIENT_UUID = 97
    RELAY_AGENT_INFO = 82
    END = 255


@dataclass
class Packet:
    """One DHCPv4 message. Addresses are dotted text, ``chaddr`` the hardware address bytes
    (``hlen`` of them), ``options`` raw values by code in the order they came or will go."""

    op: int = BOOTREQUEST
    htype: int = 1
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: str = ZERO_IP
    yiaddr: str = ZERO_IP
    siaddr: str = ZERO_IP
    giaddr: str = ZERO_IP
    chaddr: bytes = b"\x00" * 6
    sname: bytes = b""
    file: bytes = b""
    options: dict[int, bytes] = field(default_factory=dict)

    # -- typed reads of the options the server uses -------------------------------------

    @property
    def message_type(self) -> MessageType | None:
        """Option 53, or None when absent or unknown (a BOOTP packet)."""
        raw = self.options.get(Opt.MESSAGE_TYPE)
        if raw is None or len(raw) != 1:
            return None
        try:
            return MessageType(raw[0])
        except ValueError:
            return None

    @property
    def mac(self) -> str:
        """``chaddr`` as ``aa:bb:cc:dd:ee:ff``."""
        return ":".join(f"{b:02x}" for b in self.chaddr)

    @property
    def broadcast(self) -> bool:
        """The client asked for broadcast replies (it cannot take unicast yet)."""
        return bool(self.flags & BROADCAST_FLAG)

    def ip_option(self, code: int) -> str | None:
        """An option holding one IPv4 address (50, 54), or None."""
        raw = self.options.get(code)
        return str(ipaddress.IPv4Address(raw)) if raw is not None and len(raw) == 4 else None

    def text_option(self, code: int) -> str | None:
        """An option holding text (12, 60...), decoded leniently, NULs stripped."""
        raw = self.options.get(code)
        return raw.rstrip(b"\x00").decode("utf-8", "replace") if raw is not None else None

    @property
    def client_arch(self) -> int | None:
        """Option 93 (RFC 4578): the first architecture type the client lists."""
        raw = self.options.get(Opt.CLIENT_ARCH)
        return int.from_bytes(raw[:2], "big") if raw is not None and len(raw) >= 2 else None

    @property
    def user_classes(self) -> list[bytes]:
        """Option 77: RFC 3004 length-prefixed classes, or (as iPXE sends it) one raw string."""
        raw = self.options.get(Opt.USER_CLASS)
        if not raw:
            return []
        classes, i = [], 0
        while i < len(raw):
            size = raw[i]
            if size == 0 or i + 1 + size > len(raw):
                return [raw]  # not RFC 3004 framing: the whole value is one class
            classes.append(raw[i + 1 : i + 1 + size])
            i += 1 + size
        return classes

    @property
    def parameter_requests(self) -> bytes:
        """Option 55: the codes the client asks for, in its order of preference."""
        return self.options.get(Opt.PARAMETER_REQUEST_LIST, b"")


# -- parsing ----------------------------------------------------------------------------


def _ip(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def _read_options(data: bytes, into: dict[int, bytes]) -> None:
    """Read a TLV area; a repeated code is concatenated (RFC 3396 long options)."""
    i, end = 0, len(data)
    while i < end:
        code = data[i]
        if code == Opt.END:
            return
        if code == Opt.PAD:
            i += 1
            continue
        if i + 1 >= end:
            raise MalformedPacket(f"option {code} has no length byte")
        size = data[i + 1]
        if i + 2 + size > end:
            raise MalformedPacket(f"option {code} runs past the end of the packet")
        into[code] = into.get(code, b"") + data[i + 2 : i + 2 + size]
        i += 2 + size
    # No END: many clients pad instead of ending; the options read so far stand.


def parse(data: bytes) -> Packet:
    """Read a DHCPv4 packet.

    Raises:
        MalformedPacket: too short, no magic cookie, bad option framing, a hardware address
            longer than ``chaddr``, or a bad option 52 (or one repeated in an overloaded
            field); never any other exception.
    """
    if len(data) < FIXED_LEN + len(MAGIC_COOKIE):
        raise MalformedPacket(f"{len(data)} bytes is shorter than a DHCP packet")
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, ch, sname, file) = _FIXED.unpack_from(
        data
    )
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedPacket(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if hlen > 16:
        raise MalformedPacket(f"hardware address length {hlen} is over 16")
    if data[FIXED_LEN : FIXED_LEN + 4] != MAGIC_COOKIE:
        raise MalformedPacket("no DHCP magic cookie")
    options: dict[int, bytes] = {}
    _read_options(data[FIXED_LEN + 4 :], options)
    overload = options.get(Opt.OVERLOAD)
    if overload is not None:
        # RFC 2131 4.1: options continue in the file and/or sname fields.
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise MalformedPacket("option 52 must be 1, 2 or 3")
        if overload[0] & 1:
            _read_options(file, options)
            file = b""
        if overload[0] & 2:
            _read_options(sname, options)
            sname = b""
        if options[Opt.OVERLOAD] != overload:
            # RFC 2131 4.1: option 52 belongs in the options field only; one repeated in
            # file or sname would be concatenated into a value ``build`` cannot write back.
            raise MalformedPacket("option 52 inside an overloaded field")
    return Packet(
        op=op,
        htype=htype,
        hops=hops,
        xid=xid,
        secs=secs,
        flags=flags,
        ciaddr=_ip(ci),
        yiaddr=_ip(yi),
        siaddr=_ip(si),
        giaddr=_ip(gi),
        chaddr=ch[:hlen],
        sname=sname.rstrip(b"\x00"),
        file=file.rstrip(b"\x00"),
        options=options,
    )


# -- building ---------------------------------------------------------------------------


def _encode_options(options: dict[int, bytes]) -> bytes:
    out = bytearray()
    for code, value in options.items():
        if code in (Opt.PAD, Opt.END):
            continue
        # Values over 255 bytes are split into several instances (RFC 3396).
        chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [b""]
        for chunk in chunks:
            out += bytes((code, len(chunk))) + chunk
    out.append(Opt.END)
    return bytes(out)


def build(packet: Packet) -> bytes:
    """The wire form of ``packet``, padded to BOOTP's 300-byte minimum.

    Raises:
        MalformedPacket: a field does not fit (chaddr over 16 bytes, sname over 64, file
            over 128, an address that is not IPv4, a number out of range).
    """
    if len(packet.chaddr) > 16 or len(packet.sname) > 64 or len(packet.file) > 128:
        raise MalformedPacket("chaddr, sname or file is too long")
    try:
        fixed = _FIXED.pack(
            packet.op,
            packet.htype,
            len(packet.chaddr),
            packet.hops,
            packet.xid,
            packet.secs,
            packet.flags,
            ipaddress.IPv4Address(packet.ciaddr).packed,
            ipaddress.IPv4Address(packet.yiaddr).packed,
            ipaddress.IPv4Address(packet.siaddr).packed,
            ipaddress.IPv4Address(packet.giaddr).packed,
            packet.chaddr,
            packet.sname,
            packet.file,
        )
    except (struct.error, ValueError) as exc:
        raise MalformedPacket(f"cannot encode the packet: {exc}") from exc
    body = fixed + MAGIC_COOKIE + _encode_options(packet.options)
    return body.ljust(MIN_BUILT_LEN, b"\x00")


# -- option value encoders (what the server writes) --------------------------------------


def ips(addresses: list[str]) -> bytes:
    """A list of IPv4 addresses (options 3, 6, 42, 54...)."""
    return b"".join(ipaddress.IPv4Address(a).packed for a in addresses)


def u32(value: int) -> bytes:
    """A 32-bit unsigned number (options 51, 58, 59)."""
    return struct.pack("!I", value)


def u16(value: int) -> bytes:
    """A 16-bit unsigned number (options 26, 57)."""
    return struct.pack("!H", value)
