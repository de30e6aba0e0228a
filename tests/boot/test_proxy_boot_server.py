"""Proxy mode's PXE boot server discovery on port 4011: the boot service in proxy mode on
loopback, a client socket (the test builds the packets; no packaged client speaks to 4011)
asking by unicast REQUEST as a PXE ROM does once it has its address. Non-PXE and
out-of-place messages are dropped and counted, never answered."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from metalbus.boot.dhcp.codec import MessageType, Opt, Packet, build, parse
from tests.boot.conftest import Stack
from tests.boot.test_relay_loopback import free_udp_port, ip
from tests.helpers import async_wait_for

UUID_97 = bytes.fromhex("00b8945908d6a641a9611d74a6ab80b83d")  # type 0 + 16 bytes


@pytest.fixture
def client() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def request(kind: MessageType, xid: int, **options: bytes) -> Packet:
    opts = {Opt.MESSAGE_TYPE: bytes((kind,))}
    opts.update({int(k.removeprefix("o")): v for k, v in options.items()})
    return Packet(xid=xid, ciaddr="127.0.0.1", chaddr=bytes.fromhex("525400aa0001"), options=opts)


async def ask(sock: socket.socket, port: int, packet: Packet | bytes) -> None:
    data = packet if isinstance(packet, bytes) else build(packet)
    await asyncio.get_running_loop().sock_sendto(sock, data, ("127.0.0.1", port))


async def reply_to(sock: socket.socket, xid: int) -> Packet:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        while True:
            reply = parse(await loop.sock_recv(sock, 2048))
            if reply.xid == xid:
                return reply


async def test_port_4011_answers_pxe_requests_with_the_boot_file(
    stack: Stack, client: socket.socket
) -> None:
    pxe_port = free_udp_port()
    await stack.start_boot(
        dhcp_interfaces=["lo"],
        dhcp_port=free_udp_port(),
        dhcp_mode="proxy",
        dhcp_pxe_port=pxe_port,
    )
    efi = {"o60": b"PXEClient:Arch:00007:UNDI:003016", "o93": b"\x00\x07", "o97": UUID_97}
    await ask(client, pxe_port, request(MessageType.REQUEST, 41, **efi))
    ack = await reply_to(client, 41)
    assert ack.message_type is MessageType.ACK
    assert ack.yiaddr == "0.0.0.0" and ack.ciaddr == "127.0.0.1"
    assert Opt.LEASE_TIME not in ack.options  # boot information only, no lease
    assert ack.file == b"bootx64.efi" and ack.siaddr == "127.0.0.1"
    assert ack.options[Opt.BOOTFILE_NAME] == b"bootx64.efi"
    assert ack.options[Opt.VENDOR_CLASS] == b"PXEClient"
    assert ack.options[Opt.VENDOR_SPECIFIC] == bytes((6, 1, 8, 255))
    assert ack.options[Opt.CLIENT_UUID] == UUID_97
    assert ack.options[Opt.SERVER_ID] == ip("127.0.0.1")

    bios = {"o60": b"PXEClient:Arch:00000:UNDI:002001", "o93": b"\x00\x00"}
    await ask(client, pxe_port, request(MessageType.INFORM, 42, **bios))
    assert (await reply_to(client, 42)).file == b"lpxelinux.0"

    # not network booting, a DISCOVER (that goes to port 67), garbage: dropped and counted
    await ask(client, pxe_port, request(MessageType.REQUEST, 43))
    await ask(client, pxe_port, request(MessageType.DISCOVER, 44, **bios))
    await ask(client, pxe_port, b"\x01\x02garbage")
    await ask(client, pxe_port, request(MessageType.REQUEST, 45, **bios))  # a marker
    assert (await reply_to(client, 45)).message_type is MessageType.ACK

    def dropped(reason: str) -> float:
        return stack.metric("metalbus_dhcp_dropped_total", reason=reason)

    await async_wait_for(lambda: dropped("malformed") == 1, 5, "the garbage counted")
    assert dropped("proxy_not_pxe") == 1 and dropped("boot_server_unexpected_type") == 1
    assert stack.metric("metalbus_dhcp_sent_total", type="ack") == 3
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe, pytest.raises(OSError):
        probe.bind(("0.0.0.0", pxe_port))  # boot holds it (the check the next test relies on)


async def test_full_mode_does_not_serve_port_4011(stack: Stack) -> None:
    pxe_port = free_udp_port()
    await stack.start_boot(
        dhcp_interfaces=["lo"], dhcp_port=free_udp_port(), dhcp_pxe_port=pxe_port
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("0.0.0.0", pxe_port))  # free: nothing of boot's holds it
