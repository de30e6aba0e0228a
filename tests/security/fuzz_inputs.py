"""What the parser fuzzers feed: valid wire inputs (seeds) and hypothesis strategies that
mutate them, shared by tests/security/test_fuzz_parsers.py and bench/fuzz.py.

Random bytes mostly die at the first length or magic check; mutating a valid packet (flip,
cut, insert, splice) reaches the option walkers and record parsers behind those checks.
"""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import strategies as st

from metalbus.boot.dhcp import codec as dhcp
from metalbus.boot.tftp import codec as tftp
from metalbus.discovery.frames import ETH_P_IP, ETH_P_IPV6, arp_request
from tests.discovery.test_frames import ETH_P_ARP, arp, ether, icmpv6, mdns_response, ndp

MAC = bytes.fromhex("525400123456")


def dhcp_seeds() -> list[bytes]:
    """A PXE DISCOVER with option 82 and 77, a relayed REQUEST, an overloaded packet."""
    discover = dhcp.Packet(
        xid=0x1234,
        chaddr=MAC,
        flags=dhcp.BROADCAST_FLAG,
        options={
            dhcp.Opt.MESSAGE_TYPE: bytes([dhcp.MessageType.DISCOVER]),
            dhcp.Opt.PARAMETER_REQUEST_LIST: bytes([1, 3, 6, 66, 67]),
            dhcp.Opt.VENDOR_CLASS: b"PXEClient:Arch:00007:UNDI:003016",
            dhcp.Opt.CLIENT_ARCH: b"\x00\x07",
            dhcp.Opt.USER_CLASS: b"\x04iPXE",
            dhcp.Opt.RELAY_AGENT_INFO: b"\x01\x04eth0\x02\x06" + MAC,
        },
    )
    request = dhcp.Packet(
        xid=7,
        giaddr="10.0.0.1",
        chaddr=MAC,
        options={
            dhcp.Opt.MESSAGE_TYPE: bytes([dhcp.MessageType.REQUEST]),
            dhcp.Opt.REQUESTED_IP: dhcp.ips(["10.0.0.50"]),
            dhcp.Opt.SERVER_ID: dhcp.ips(["10.0.0.2"]),
            dhcp.Opt.HOSTNAME: b"node-1",
        },
    )
    overloaded = bytearray(dhcp.build(request))
    overloaded[108:111] = bytes([dhcp.Opt.HOSTNAME, 1, 0x41])  # options in ``file``
    overloaded = overloaded[: dhcp.FIXED_LEN + 4] + bytes([dhcp.Opt.OVERLOAD, 1, 1, 255])
    return [dhcp.build(discover), dhcp.build(request), bytes(overloaded)]


def tftp_seeds() -> list[bytes]:
    """One of each opcode, with options on the request and the OACK."""
    return [
        tftp.build(
            tftp.Request(tftp.Opcode.RRQ, "pxelinux.0", "octet", {"blksize": "1468", "tsize": "0"})
        ),
        tftp.build(tftp.Data(1, b"\x00" * 16)),
        tftp.build(tftp.Ack(3)),
        tftp.build(tftp.Error(tftp.ErrorCode.FILE_NOT_FOUND, "no such file")),
        tftp.build(tftp.OptionAck({"blksize": "1468"})),
    ]


def _udp_ipv4(payload: bytes, port: int = 5353) -> bytes:
    udp = struct.pack("!HHHH", port, port, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 0, 0, 255, 17, 0)
    src = ipaddress.IPv4Address("10.213.9.10").packed
    dst = ipaddress.IPv4Address("224.0.0.251").packed
    return header + src + dst + udp


def frame_seeds() -> list[bytes]:
    """ARP request, reply (VLAN-tagged), NDP NS and NA, an mDNS answer over IPv4."""
    return [
        arp_request(MAC, ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.9")),
        ether(arp(2, MAC, "10.0.0.9", "10.0.0.1"), ETH_P_ARP, 42),
        ether(icmpv6("fe80::1", ndp(135, "fe80::2", 1)), ETH_P_IPV6),
        ether(icmpv6("fe80::2", ndp(136, "fe80::2", 2)), ETH_P_IPV6, 5, 6),
        ether(_udp_ipv4(mdns_response()), ETH_P_IP),
    ]


def mdns_seeds() -> list[bytes]:
    return [mdns_response(), mdns_response("a.local", "192.0.2.1")]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """One of ``seeds`` with a few byte flips, cuts, insertions or duplicated slices."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["set", "cut", "insert", "repeat", "truncate"]))
        if kind == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 32))]
        else:
            del data[at:]
    return bytes(data)


# Constraint strings: the grammar's own characters, so that most draws are near-valid.
_CONSTRAINT_ALPHABET = st.sampled_from([*"abc019.:;,=()_- ", "²", "٣", "\x00", "é"])
STORAGE_WORDS = ["root", "data", ":", "20", "1.5", "(", ")", "ssd", ",", "9" * 400, "0"]
INTERFACE_WORDS = [
    "eth0", "eth1", ":", ";", ",", "=", "space", "subnet", "vlan", "vid", "fabric", "ip",
    "type", "mode", "name", "dmz", "10.0.0.5", "10.1.0.0/24", "fd00::/64", "bridge",
    "macvlan", "vepa", "5", "4095", "²", "9" * 30,
]  # fmt: skip


def constraint_text(words: list[str]) -> st.SearchStrategy[str]:
    """Arbitrary text, or a run of the grammar's words and characters."""
    return st.one_of(
        st.text(max_size=80),
        st.lists(st.one_of(st.sampled_from(words), _CONSTRAINT_ALPHABET), max_size=24).map("".join),
    )
