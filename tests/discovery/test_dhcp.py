"""Rogue DHCP detection against a real second DHCP server (busybox udhcpd) in a namespace."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metalbus.discovery.dhcp import MalformedReply, build_discover, parse_offer
from metalbus.shared.contract import discovery as d
from metalbus.shared.contract import ipam as c
from metalbus.shared.errors import ValidationFailed
from tests.discovery.conftest import Link, Stack, ip
from tests.helpers import async_wait_for

SERVER = "10.213.9.10"
MAC = bytes.fromhex("525400123456")
UDHCPD = """interface {peer}
start 10.213.9.100
end 10.213.9.110
lease_file {dir}/udhcpd.leases
pidfile {dir}/udhcpd.pid
option subnet 255.255.255.0
"""


def offer(xid: int, kind: int = 2, server: bytes = bytes([10, 0, 0, 1])) -> bytes:
    reply = bytearray(build_discover(xid, MAC))
    reply[0] = 2
    reply[16:20] = bytes([10, 0, 0, 50])
    options = bytes([53, 1, kind, 54, 4, *server, 255])
    return bytes(reply[:240]) + options


def test_offers_are_read_and_everything_else_is_not() -> None:
    assert parse_offer(offer(7)) is not None
    found = parse_offer(offer(7))
    assert found is not None and (found.xid, found.server_id, found.offered_ip) == (
        7,
        "10.0.0.1",
        "10.0.0.50",
    )
    assert parse_offer(offer(7, kind=5)) is None  # an ACK is not an offer
    assert parse_offer(build_discover(7, MAC)) is None  # a request (op 1)
    with pytest.raises(MalformedReply):
        parse_offer(b"\x02" * 100)
    with pytest.raises(MalformedReply):
        parse_offer(offer(7)[:-1] + bytes([54, 9]))  # an option past the end
    discover = build_discover(0x01020304, MAC)
    assert len(discover) == 300 and struct.unpack_from("!I", discover, 4)[0] == 0x01020304


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=400))
def test_random_datagrams_never_crash_the_offer_parser(data: bytes) -> None:
    for candidate in (data, offer(1)[:240] + data):
        try:
            parse_offer(candidate)
        except MalformedReply:
            pass


async def test_a_second_dhcp_server_is_found_reported_and_marked_in_ipam(
    stack: Stack, link: Link, tmp_path: Path
) -> None:
    subnet = await stack.subnet("10.213.9.0/24")
    ip("-n", link.namespace, "addr", "add", f"{SERVER}/24", "dev", link.peer)
    conf = tmp_path / "udhcpd.conf"
    conf.write_text(UDHCPD.format(peer=link.peer, dir=tmp_path))
    (tmp_path / "udhcpd.leases").write_bytes(b"")
    server = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", link.namespace, "busybox", "udhcpd", "-f", str(conf),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # First as metalbus's own server: seen, not reported.
        await stack.start_discovery(
            interfaces=[link.host], dhcp_known_servers=[SERVER], dhcp_probe_wait_s=0.5
        )

        async def answered() -> d.DhcpProbeResult | None:
            result = await stack.call(d.DHCP_PROBE, interface=link.host)
            return result if result.servers else None

        result = await async_wait_for(answered, 20, "udhcpd to answer a probe")
        assert [(s.server_ip, s.external) for s in result.servers] == [(SERVER, False)]
        assert result.servers[0].offered_ip.startswith("10.213.9.1")
        assert not stack.seen(d.DhcpServerFound)

        # Now as a stranger: the event, and ipam's VLAN marked.
        await stack.stop_discovery()
        await stack.start_discovery(interfaces=[link.host], dhcp_probe_wait_s=0.5)
        result = await async_wait_for(answered, 20, "udhcpd to answer again")
        found = result.servers[0]
        assert (found.server_ip, found.external, found.vlan_id) == (SERVER, True, subnet.vlan_id)
        event = await async_wait_for(
            lambda: stack.seen(d.DhcpServerFound, server_ip=SERVER), 10, "dhcp.server_seen"
        )
        assert event[0].interface == link.host and event[0].vlan_id == subnet.vlan_id
        vlan = await stack.call(c.VLAN_GET, id=subnet.vlan_id)
        assert vlan.external_dhcp == SERVER
        with pytest.raises(ValidationFailed) as caught:
            await stack.call(d.DHCP_PROBE, interface="mbd-missing0")
        assert caught.value.field == "interface"
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()
