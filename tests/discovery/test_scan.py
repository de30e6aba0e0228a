"""Active scans of subnets in namespaces these tests create.

ARP: the namespace's end holds 10.213.9.10-12 (inside the scanned /27) and 10.213.9.40 (in
the same /24, outside the /27); its kernel answers ARP for each. Ping: the namespace routes
to a second one holding 10.213.20.10-12 and .40, and the host routes that /24 through it.
A raw socket of the test on the host's end records every request a scan sends, to check
none left the subnet asked for.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import subprocess
from collections.abc import Iterator

import pytest

from metalbus.discovery.capture import ETH_P_ALL, PACKET_OUTGOING
from metalbus.shared.contract import discovery as d
from metalbus.shared.contract import ipam as c
from metalbus.shared.errors import ValidationFailed
from tests.discovery.conftest import HOST_IP, Link, Stack, ip
from tests.helpers import async_wait_for

CIDR = "10.213.9.0/27"
ANSWERING = ["10.213.9.10", "10.213.9.11", "10.213.9.12"]
OUTSIDE = "10.213.9.40"


@contextlib.contextmanager
def watching(link: Link) -> Iterator[socket.socket]:
    """A raw socket on the host's end of the link: it sees every frame the host sends."""
    watch = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        watch.bind((link.host, ETH_P_ALL))
        watch.setblocking(False)
        yield watch
    finally:
        watch.close()


def outgoing(sock: socket.socket) -> Iterator[bytes]:
    """The frames this host sent, drained from the socket."""
    while True:
        try:
            frame, address = sock.recvfrom(2048)
        except BlockingIOError:
            return
        if address[2] == PACKET_OUTGOING:
            yield frame


def requests_sent(sock: socket.socket) -> list[str]:
    """Target addresses of the ARP requests this host sent."""
    return [
        str(ipaddress.IPv4Address(frame[38:42]))
        for frame in outgoing(sock)
        if frame[12:14] == b"\x08\x06" and frame[21] == 1
    ]


def pings_sent(sock: socket.socket) -> list[str]:
    """Destinations of the ICMP echo requests this host sent."""
    targets = []
    for frame in outgoing(sock):
        packet = frame[14:]
        if frame[12:14] == b"\x08\x00" and packet[9] == 1:
            if packet[(packet[0] & 0x0F) * 4] == 8:  # echo request
                targets.append(str(ipaddress.IPv4Address(packet[16:20])))
    return targets


async def finished(stack: Stack, scan_id: int) -> d.Scan:
    """The scan once it is no longer running."""

    async def done() -> d.Scan | None:
        scan = await stack.call(d.SCAN_GET, id=scan_id)
        return scan if scan.state is not d.ScanState.RUNNING else None

    return await async_wait_for(done, 20, f"scan {scan_id} to finish")


@pytest.mark.parametrize("listening", [True, False], ids=["listening", "scan-only"])
async def test_scan_finds_the_answering_addresses_and_stays_inside_the_subnet(
    stack: Stack, link: Link, listening: bool
) -> None:
    for address in [*ANSWERING, OUTSIDE]:
        ip("-n", link.namespace, "addr", "add", f"{address}/24", "dev", link.peer)
    await stack.start_discovery(
        interfaces=[link.host] if listening else [],
        scan_rate_pps=2000,
        scan_reply_wait_s=0.3,
        scan_max_addresses=64,
    )
    with watching(link) as watch:
        started = await stack.call(d.SCAN_START, cidr=CIDR, interface=link.host)
        assert started.state is d.ScanState.RUNNING and started.probes == 29  # 30 hosts - ours
        assert started.method is d.ScanMethod.ARP
        scan = await finished(stack, started.id)
        assert (scan.state, scan.sent, scan.answered, scan.error) == (d.ScanState.DONE, 29, 3, None)
        sent = requests_sent(watch)
    network = ipaddress.ip_network(CIDR)
    scanned = [t for t in sent if t != HOST_IP]
    assert all(ipaddress.ip_address(t) in network for t in sent), sent
    hosts = {str(h) for h in network.hosts()} - {HOST_IP}
    assert set(scanned) >= hosts and OUTSIDE not in sent
    completed = await async_wait_for(lambda: stack.seen(d.ScanCompleted), 10, "scan.completed")
    assert completed[0].scan.answered == 3
    for address in ANSWERING:
        news = await async_wait_for(
            lambda a=address: stack.seen(d.NeighbourNew, ip=a), 10, f"{address} as new"
        )
        assert news[0].mac == link.peer_mac
    page = await stack.call(d.SCAN_LIST)
    assert [s.id for s in page.items] == [started.id]


async def test_scans_outside_the_rules_are_refused(stack: Stack, link: Link) -> None:
    await stack.start_discovery(interfaces=[link.host], scan_max_addresses=64)
    refused = {
        "10.213.9.0/25": "at most 64",  # too large
        "10.213.10.0/27": "not directly attached",
        "10.213.8.0/22": "at most 64",
        "10.213.9.1/27": "is not a subnet",  # host bits set
        "fd00:213:9::/120": "IPv4 only",
        "nonsense": "is not a subnet",
    }
    for cidr, why in refused.items():
        with pytest.raises(ValidationFailed) as caught:
            await stack.call(d.SCAN_START, cidr=cidr)
        assert caught.value.field == "cidr" and why in caught.value.message, cidr
    # A subnet bigger than the attached network is not attached as a whole.
    with pytest.raises(ValidationFailed, match="not directly attached"):
        await stack.call(d.SCAN_START, cidr="10.213.8.0/26", interface=link.host)
    assert (await stack.call(d.SCAN_LIST)).items == []


ROUTER_IP = "10.213.9.2"  # the router namespace's address on the host's link
ROUTED = "10.213.20.0/24"  # behind the router
ROUTED_CIDR = "10.213.20.0/27"
ROUTED_ANSWERING = ["10.213.20.10", "10.213.20.11", "10.213.20.12"]
ROUTED_OUTSIDE = "10.213.20.40"  # behind the router too, outside the /27


@pytest.fixture
def routed(link: Link) -> Iterator[str]:
    """A subnet behind a router: the ``link`` namespace forwards between the host's link
    and a second namespace holding 10.213.20.0/24; the host routes that /24 through it."""
    far = f"{link.namespace}-far"
    inner, outer = f"{link.host[:-1]}r", f"{link.host[:-1]}f"
    try:
        ip("netns", "add", far)
        ip("-n", link.namespace, "link", "add", inner, "type", "veth", "peer", "name", outer)
        ip("-n", link.namespace, "link", "set", outer, "netns", far)
        ip("-n", link.namespace, "addr", "add", f"{ROUTER_IP}/24", "dev", link.peer)
        ip("-n", link.namespace, "addr", "add", "10.213.20.1/24", "dev", inner)
        ip("-n", link.namespace, "link", "set", inner, "up")
        # /proc/sys/net is the namespace's own for a process inside it.
        forward = "echo 1 > /proc/sys/net/ipv4/ip_forward"
        subprocess.run(["ip", "netns", "exec", link.namespace, "sh", "-c", forward], check=True)
        for address in [*ROUTED_ANSWERING, ROUTED_OUTSIDE]:
            ip("-n", far, "addr", "add", f"{address}/24", "dev", outer)
        ip("-n", far, "link", "set", outer, "up")
        ip("-n", far, "link", "set", "lo", "up")
        ip("-n", far, "route", "add", "default", "via", "10.213.20.1")
        # Goes with the host's end of the link when the link fixture deletes it.
        ip("route", "add", ROUTED, "via", ROUTER_IP, "dev", link.host)
        yield far
    finally:
        subprocess.run(["ip", "netns", "del", far], capture_output=True)


async def test_active_discovery_subnets_are_scanned_on_a_schedule(
    stack: Stack, link: Link, routed: str
) -> None:
    for address in ANSWERING:
        ip("-n", link.namespace, "addr", "add", f"{address}/24", "dev", link.peer)
    fabric = await stack.call(c.FABRIC_CREATE, name=None)
    await stack.call(
        c.SUBNET_CREATE, cidr=CIDR, vlan_id=fabric.default_vlan_id, active_discovery=True
    )
    await stack.call(
        c.SUBNET_CREATE, cidr=ROUTED_CIDR, vlan_id=fabric.default_vlan_id, active_discovery=True
    )
    await stack.call(c.SUBNET_CREATE, cidr="10.213.11.0/24", vlan_id=fabric.default_vlan_id)
    # Active, but reached only by the default route: never scanned.
    await stack.call(
        c.SUBNET_CREATE,
        cidr="10.213.12.0/24",
        vlan_id=fabric.default_vlan_id,
        active_discovery=True,
    )
    await stack.start_discovery(
        interfaces=[link.host],
        active_scan_interval_s=3600,  # one round at start, the next an hour later
        scan_rate_pps=2000,
        scan_reply_wait_s=0.3,
    )

    async def done() -> list[d.Scan] | None:
        page = await stack.call(d.SCAN_LIST)
        scans = [s for s in page.items if s.state is d.ScanState.DONE]
        return scans if len(scans) == 2 else None

    scans = await async_wait_for(done, 20, "the scheduled scans")
    # The router's address on the link (10.213.9.2) is in the /27 too.
    assert [(s.cidr, s.interface, s.method, s.answered) for s in scans] == [
        (CIDR, link.host, d.ScanMethod.ARP, 4),
        (ROUTED_CIDR, link.host, d.ScanMethod.PING, 4),
    ]
    assert len((await stack.call(d.SCAN_LIST)).items) == 2
    with pytest.raises(ValidationFailed) as caught:
        await stack.call(d.SCAN_START, cidr=CIDR, interface="mbd-missing0")
    assert caught.value.field == "interface"


async def test_a_routed_subnet_is_swept_with_pings_inside_the_subnet_only(
    stack: Stack, link: Link, routed: str
) -> None:
    subnet = await stack.subnet(ROUTED)  # ipam knows the routed network
    await stack.start_discovery(
        interfaces=[link.host], scan_rate_pps=2000, scan_reply_wait_s=0.3, scan_max_addresses=64
    )
    with watching(link) as watch:
        started = await stack.call(d.SCAN_START, cidr=ROUTED_CIDR)
        assert (started.method, started.interface, started.probes) == (
            d.ScanMethod.PING,
            link.host,
            30,
        )
        scan = await finished(stack, started.id)
        assert (scan.state, scan.sent, scan.answered, scan.error) == (d.ScanState.DONE, 30, 4, None)
        sent = pings_sent(watch)
    network = ipaddress.ip_network(ROUTED_CIDR)
    assert sorted(sent, key=ipaddress.ip_address) == [str(h) for h in network.hosts()]
    completed = await async_wait_for(lambda: stack.seen(d.ScanCompleted), 10, "scan.completed")
    assert completed[0].scan.method is d.ScanMethod.PING
    answers = stack.seen(d.HostAnswered, scan_id=started.id)
    # The router's own address in the subnet answers too.
    expected = ["10.213.20.1", *ROUTED_ANSWERING]
    assert [(a.ip, a.interface) for a in answers] == [(h, link.host) for h in expected]
    # The router's MAC answers for none of them: no neighbour is made of a ping answer.
    assert not [e for e in stack.seen(d.NeighbourNew) if e.ip.startswith("10.213.20.")]

    async def recorded() -> list[tuple[str, c.AddressType, str | None]] | None:
        page = await stack.call(c.ADDRESS_LIST, subnet_id=subnet.id, limit=100)
        found = sorted(((a.ip, a.alloc_type, a.mac) for a in page.items), key=lambda r: r[0])
        return found if len(found) >= len(expected) else None

    # Each answer counts as used in ipam: discovered, with no MAC (it came through a router).
    assert await async_wait_for(recorded, 10, "ipam to record the answers") == [
        (h, c.AddressType.DISCOVERED, None) for h in sorted(expected)
    ]

    # Through an interface the route does not use, or next to the routed /24 (only the
    # default route goes there): refused.
    for cidr, interface in [(ROUTED_CIDR, "lo"), ("10.213.21.0/27", None)]:
        with pytest.raises(ValidationFailed) as caught:
            await stack.call(d.SCAN_START, cidr=cidr, interface=interface)
        assert caught.value.field == "cidr" and "default route" in caught.value.message
