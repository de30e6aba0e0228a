"""Passive observation of real ARP and NDP traffic in a namespace this test creates.

iputils arping and the namespace's own kernel (neighbour solicitation before it sends to
an IPv6 address) make the frames; discovery listens on the host's end of the veth pair.
"""

from __future__ import annotations

import struct
import sys

from metalbus.shared.contract import discovery as d
from metalbus.shared.contract import ipam as c
from tests.discovery.conftest import HOST_IP6, Link, Stack, announce, ip, run_in
from tests.discovery.test_frames import mdns_response
from tests.helpers import async_wait_for

PEER_IP = "10.213.9.10"
PEER_IP6 = "fd00:213:9::10"
NEW_MAC = "52:54:00:9a:9b:9c"


async def discovered_in_ipam(stack: Stack, address: str, mac: str) -> bool:
    page = await stack.call(c.ADDRESS_LIST, ip=address)
    return any(a.alloc_type is c.AddressType.DISCOVERED and a.mac == mac for a in page.items)


async def test_arp_new_refreshed_moved_recorded_by_ipam_and_kept_over_a_restart(
    stack: Stack, link: Link
) -> None:
    await stack.subnet("10.213.9.0/24")
    ip("-n", link.namespace, "addr", "add", f"{PEER_IP}/24", "dev", link.peer)
    await stack.start_discovery(interfaces=[link.host], refresh_interval_s=0)

    await announce(link, PEER_IP)
    new = await async_wait_for(
        lambda: stack.seen(d.NeighbourNew, ip=PEER_IP), 10, "neighbour.new for the peer"
    )
    assert new[0].mac == link.peer_mac and new[0].interface == link.host and new[0].vid is None
    await async_wait_for(
        lambda: discovered_in_ipam(stack, PEER_IP, link.peer_mac), 10, "ipam's DISCOVERED"
    )
    assert stack.metric(
        "metalbus_discovery_frames_total", interface=link.host, kind="arp_gratuitous"
    )

    # Seen again: refreshed (the throttle is 0 here), and counted.
    await announce(link, PEER_IP)
    await async_wait_for(
        lambda: stack.seen(d.NeighbourRefreshed, ip=PEER_IP), 10, "neighbour.refreshed"
    )

    # Another MAC answers for the address: moved, and ipam follows.
    ip("-n", link.namespace, "link", "set", link.peer, "address", NEW_MAC)
    await announce(link, PEER_IP)
    moved = await async_wait_for(
        lambda: stack.seen(d.NeighbourMoved, ip=PEER_IP), 10, "neighbour.moved"
    )
    assert moved[0].mac == NEW_MAC and moved[0].previous_mac == link.peer_mac
    await async_wait_for(lambda: discovered_in_ipam(stack, PEER_IP, NEW_MAC), 10, "ipam moved")
    page = await stack.call(d.DISCOVERY_LIST, ip=PEER_IP)
    assert [(x.mac, x.count, x.interface) for x in page.items] == [(NEW_MAC, 1, link.host)]

    # A restart loads the table: the next sighting is no news (throttle now an hour).
    await stack.stop_discovery()
    await stack.start_discovery(interfaces=[link.host], refresh_interval_s=3600)
    before = len(stack.events)
    await announce(link, PEER_IP)

    async def counted() -> bool:
        found = await stack.call(d.DISCOVERY_LIST, ip=PEER_IP)
        return bool(found.items) and found.items[0].count == 2

    await async_wait_for(counted, 10, "the second sighting to be written")
    assert not [e for e in stack.events[before:] if isinstance(e, d.NeighbourNew)]


async def send_frame(link: Link, frame: bytes) -> None:
    """Send one raw Ethernet frame from the namespace's end of the pair."""
    program = (
        "import socket, sys; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); "
        f"s.bind(({link.peer!r}, 0)); s.send(bytes.fromhex(sys.argv[1]))"
    )
    await run_in(link, sys.executable, "-c", program, frame.hex())


async def test_tagged_arp_and_ipv6_neighbour_discovery(stack: Stack, link: Link) -> None:
    # This kernel has no 802.1Q module (no VLAN interfaces): the namespace sends a tagged
    # gratuitous ARP as a raw frame over the veth pair instead.
    ip("-n", link.namespace, "-6", "addr", "add", f"{PEER_IP6}/64", "dev", link.peer, "nodad")
    await stack.start_discovery(interfaces=[link.host])
    mac = bytes.fromhex(link.peer_mac.replace(":", ""))
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + bytes([10, 213, 42, 10])
    arp += b"\x00" * 6 + bytes([10, 213, 42, 10])
    frame = b"\xff" * 6 + mac + struct.pack("!HHH", 0x8100, 42, 0x0806) + arp
    await send_frame(link, frame.ljust(64, b"\x00"))
    tagged = await async_wait_for(
        lambda: stack.seen(d.NeighbourNew, ip="10.213.42.10"), 10, "the tagged neighbour"
    )
    assert tagged[0].vid == 42 and tagged[0].mac == link.peer_mac

    # A malformed ARP frame (operation 9) is dropped and counted, over the same wire.
    bad = b"\xff" * 6 + mac + struct.pack("!H", 0x0806) + arp[:6] + b"\x00\x09" + arp[8:]
    await send_frame(link, bad)
    await async_wait_for(
        lambda: stack.metric("metalbus_discovery_malformed_frames_total", reason="arp_op"),
        10,
        "the malformed frame to be counted",
    )

    # A datagram to the host's address: the namespace's kernel solicits its MAC first.
    send = (
        "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
        f"s.sendto(b'x', ('{HOST_IP6}', 9))"
    )
    await run_in(link, sys.executable, "-c", send)
    solicited = await async_wait_for(
        lambda: stack.seen(d.NeighbourNew, ip=PEER_IP6), 10, "the IPv6 neighbour"
    )
    assert solicited[0].mac == link.peer_mac and solicited[0].vid is None
    assert stack.metric("metalbus_discovery_frames_total", interface=link.host, kind="ndp_ns")


async def test_mdns_announcement_names_the_discovery(stack: Stack, link: Link) -> None:
    ip("-n", link.namespace, "addr", "add", f"{PEER_IP}/24", "dev", link.peer)
    await stack.start_discovery(interfaces=[link.host])
    await announce(link, PEER_IP)
    # The announcement goes out as any mDNS responder's does: UDP from port 5353 to
    # 224.0.0.251:5353 on the link (the namespace's kernel builds the IP and Ethernet).
    program = (
        "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('', 5353)); "
        f"s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton({PEER_IP!r})); "
        "s.sendto(bytes.fromhex(sys.argv[1]), ('224.0.0.251', 5353))"
    )
    await run_in(link, sys.executable, "-c", program, mdns_response().hex())
    named = await async_wait_for(
        lambda: stack.seen(d.MdnsNameSeen, ip=PEER_IP), 10, "mdns.name_seen for the peer"
    )
    assert named[0].hostname == "peer-host" and named[0].interface == link.host
    assert stack.seen(d.MdnsNameSeen, ip="fd00:213:9::10", hostname="peer-host")

    async def hostname() -> str | None:
        page = await stack.call(d.DISCOVERY_LIST, ip=PEER_IP)
        return page.items[0].hostname if page.items else None

    assert await async_wait_for(hostname, 10, "the discovery's hostname") == "peer-host"
    assert stack.metric("metalbus_discovery_frames_total", interface=link.host, kind="mdns")
    # Clearing the address forgets its name too.
    assert (await stack.call(d.DISCOVERY_CLEAR, ip=PEER_IP)).cleared == 1
    await announce(link, PEER_IP)
    assert await async_wait_for(
        lambda: len(stack.seen(d.NeighbourNew, ip=PEER_IP)) == 2, 10, "seen again"
    )
    page = await stack.call(d.DISCOVERY_LIST, ip=PEER_IP)
    assert page.items[0].hostname is None
