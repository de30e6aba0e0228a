"""The DHCP server on real sockets, relayed over loopback: a test socket plays the relay
agent (giaddr 127.0.5.1), so every reply comes back by unicast. Beside it a real ipam."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator

import pytest
from nats.aio.msg import Msg

from metalbus.boot.dhcp.codec import MessageType, Opt, Packet, build, parse
from metalbus.shared.contract.boot import PxeUnknownMac
from metalbus.shared.contract.ipam import AddressType
from metalbus.shared.events import decode_event
from tests.boot.conftest import Stack
from tests.helpers import async_wait_for

RELAY = "127.0.5.1"
OPTION_82 = b"\x01\x08switch-1\x02\x06port-9"


def free_udp_port() -> int:
    # Probed on the wildcard address: the server binds 0.0.0.0, so the port must be free
    # on every address, not only on loopback.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def relay() -> Iterator[tuple[socket.socket, int]]:
    """The relay agent's socket on giaddr, on the port the server will use."""
    port = free_udp_port()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((RELAY, port))
    sock.setblocking(False)
    try:
        yield sock, port
    finally:
        sock.close()


def mac(n: int) -> bytes:
    return bytes.fromhex(f"52540001{n:04x}")


def relayed(kind: MessageType, n: int, xid: int, **options: bytes) -> Packet:
    opts = {Opt.MESSAGE_TYPE: bytes((kind,))}
    opts.update({int(k.removeprefix("o")): v for k, v in options.items()})
    opts[Opt.RELAY_AGENT_INFO] = OPTION_82
    return Packet(xid=xid, hops=1, giaddr=RELAY, chaddr=mac(n), options=opts)


def ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


async def send(sock: socket.socket, port: int, packet: Packet | bytes) -> None:
    data = packet if isinstance(packet, bytes) else build(packet)
    await asyncio.get_running_loop().sock_sendto(sock, data, ("127.0.0.1", port))


async def replies(sock: socket.socket, count: int, timeout: float = 5.0) -> dict[int, Packet]:
    """``count`` replies, by xid."""
    loop = asyncio.get_running_loop()
    out: dict[int, Packet] = {}
    async with asyncio.timeout(timeout):
        while len(out) < count:
            reply = parse(await loop.sock_recv(sock, 2048))
            out[reply.xid] = reply
    return out


async def exchange(sock: socket.socket, port: int, packet: Packet) -> Packet:
    await send(sock, port, packet)
    return (await replies(sock, 1))[packet.xid]


async def first_answer(sock: socket.socket, port: int, packet: Packet) -> Packet:
    """Boot stays silent until it has ipam's snapshot: ask until it answers."""

    async def answered() -> Packet | None:
        await send(sock, port, packet)
        try:
            return (await replies(sock, 1, timeout=0.3)).get(packet.xid)
        except TimeoutError:
            return None

    found: Packet = await async_wait_for(answered, 20, "boot to answer (configuration loaded)")
    return found


async def test_relayed_dora_pxe_group_commit_restart_release_and_malformed(
    stack: Stack, relay: tuple[socket.socket, int]
) -> None:
    sock, port = relay
    subnet, vlan = await stack.serve("127.0.5.0/24", RELAY, "127.0.5.100", "127.0.5.199")
    unknown: list[PxeUnknownMac] = []

    async def seen(msg: Msg) -> None:
        unknown.append(decode_event(msg.data).data)  # type: ignore[arg-type]

    await stack.bus.subscribe_events(PxeUnknownMac.subject(), seen)
    await stack.start_boot(dhcp_interfaces=["lo"], dhcp_port=port, pxe_lease_time_s=600)

    # Until boot has ipam's snapshot it stays silent; then it offers.
    bios = {"o93": b"\x00\x00", "o60": b"PXEClient:Arch:00000:UNDI:002001"}

    offer = await first_answer(sock, port, relayed(MessageType.DISCOVER, 1, 1, **bios))
    assert offer.message_type is MessageType.OFFER and offer.yiaddr == "127.0.5.100"
    assert offer.giaddr == RELAY and offer.options[Opt.RELAY_AGENT_INFO] == OPTION_82
    assert list(offer.options)[-1] == Opt.RELAY_AGENT_INFO
    assert offer.file == b"lpxelinux.0" and offer.siaddr == "127.0.0.1"
    assert offer.options[Opt.ROUTERS] == ip(RELAY)
    assert offer.options[Opt.INTERFACE_MTU] == (1400).to_bytes(2, "big")
    assert offer.options[Opt.DOMAIN_NAME] == b"metalbus.test"
    chosen = {"o54": ip("127.0.0.1"), "o50": ip(offer.yiaddr), **bios}
    ack = await exchange(sock, port, relayed(MessageType.REQUEST, 1, 2, **chosen))
    assert ack.message_type is MessageType.ACK and ack.yiaddr == "127.0.5.100"
    assert int.from_bytes(ack.options[Opt.LEASE_TIME], "big") == 600

    # ipam records the lease as a DHCP address; the unknown PXE MAC was published once.
    async def leased_in_ipam() -> bool:
        found = (await stack.addresses()).get("127.0.5.100")
        return found is not None and found.alloc_type is AddressType.DHCP

    await async_wait_for(leased_in_ipam, 10, "ipam to record the lease")
    await async_wait_for(lambda: unknown, 5, "boot.pxe.unknown_mac")
    assert unknown[0].mac == "52:54:00:01:00:01" and unknown[0].arch == 0
    assert unknown[0].boot_method == "pxe" and unknown[0].vlan_id == vlan.id
    assert unknown[0].relay_ip == RELAY and len(unknown) == 1

    # Group commit: 40 clients asking at once are written in fewer transactions than that.
    batches_before = stack.metric("metalbus_dhcp_commit_batch_size_count")
    burst = [
        relayed(MessageType.REQUEST, 100 + i, 1000 + i, o50=ip(f"127.0.5.{120 + i}"))
        for i in range(40)
    ]
    for packet in burst:
        await send(sock, port, packet)
    acks = await replies(sock, 40)
    assert {a.yiaddr for a in acks.values()} == {f"127.0.5.{120 + i}" for i in range(40)}
    assert all(a.message_type is MessageType.ACK for a in acks.values())
    transactions = stack.metric("metalbus_dhcp_commit_batch_size_count") - batches_before
    assert transactions < 40, transactions

    # Malformed and truncated packets are dropped and counted; the server keeps answering.
    await send(sock, port, b"\x00" * 10)
    await send(sock, port, build(relayed(MessageType.DISCOVER, 2, 3))[:200])
    await send(sock, port, build(relayed(MessageType.DISCOVER, 2, 3))[:240] + b"\x0c\x40ab")
    await async_wait_for(
        lambda: stack.metric("metalbus_dhcp_dropped_total", reason="malformed") == 3,
        5,
        "three malformed packets counted",
    )

    # A restart reloads the leases: the next client does not get the first one's address,
    # and the first client's renewal is acknowledged.
    await stack.stop_boot()
    await stack.start_boot()
    other = await first_answer(sock, port, relayed(MessageType.DISCOVER, 2, 4))
    assert other.yiaddr == "127.0.5.101"
    renew = Packet(xid=5, giaddr=RELAY, ciaddr="127.0.5.100", chaddr=mac(1))
    renew.options = {Opt.MESSAGE_TYPE: bytes((MessageType.REQUEST,))}
    renewed = await exchange(sock, port, renew)
    assert renewed.message_type is MessageType.ACK and renewed.yiaddr == "127.0.5.100"

    # Someone else asking for the leased address is refused (NAK, broadcast bit for the relay).
    nak = await exchange(sock, port, relayed(MessageType.REQUEST, 3, 6, o50=ip("127.0.5.100")))
    assert nak.message_type is MessageType.NAK and nak.flags & 0x8000

    # RELEASE: no reply, and ipam frees the address.
    release = Packet(xid=7, giaddr=RELAY, ciaddr="127.0.5.100", chaddr=mac(1))
    release.options = {Opt.MESSAGE_TYPE: bytes((MessageType.RELEASE,))}
    await send(sock, port, release)

    async def freed_in_ipam() -> bool:
        return "127.0.5.100" not in await stack.addresses()

    await async_wait_for(freed_in_ipam, 10, "ipam to free the released lease")
    assert subnet.cidr == "127.0.5.0/24"
