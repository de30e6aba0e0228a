"""Active ARP scans of a subnet in a namespace this test creates.

The namespace's end holds 10.213.9.10-12 (inside the scanned /27) and 10.213.9.40 (in the
same /24, outside the /27); its kernel answers ARP for each. A raw socket of the test on the
host's end records every request the scan sends, to check none left the subnet asked for.
"""

from __future__ import annotations

import ipaddress
import socket

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


def requests_sent(sock: socket.socket) -> list[str]:
    """Target addresses of the ARP requests this host sent (drained from the socket)."""
    targets = []
    while True:
        try:
            frame, address = sock.recvfrom(2048)
        except BlockingIOError:
            return targets
        if address[2] == PACKET_OUTGOING and frame[12:14] == b"\x08\x06" and frame[21] == 1:
            targets.append(str(ipaddress.IPv4Address(frame[38:42])))


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
    watch = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        watch.bind((link.host, ETH_P_ALL))
        watch.setblocking(False)
        started = await stack.call(d.SCAN_START, cidr=CIDR, interface=link.host)
        assert started.state is d.ScanState.RUNNING and started.probes == 29  # 30 hosts - ours

        async def finished() -> d.Scan | None:
            scan = await stack.call(d.SCAN_GET, id=started.id)
            return scan if scan.state is not d.ScanState.RUNNING else None

        scan = await async_wait_for(finished, 20, "the scan to finish")
        assert (scan.state, scan.sent, scan.answered, scan.error) == (d.ScanState.DONE, 29, 3, None)
        sent = requests_sent(watch)
    finally:
        watch.close()
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


async def test_active_discovery_subnets_are_scanned_on_a_schedule(stack: Stack, link: Link) -> None:
    for address in ANSWERING:
        ip("-n", link.namespace, "addr", "add", f"{address}/24", "dev", link.peer)
    fabric = await stack.call(c.FABRIC_CREATE, name=None)
    await stack.call(
        c.SUBNET_CREATE, cidr=CIDR, vlan_id=fabric.default_vlan_id, active_discovery=True
    )
    await stack.call(c.SUBNET_CREATE, cidr="10.213.11.0/24", vlan_id=fabric.default_vlan_id)
    await stack.start_discovery(
        interfaces=[link.host],
        active_scan_interval_s=3600,  # one round at start, the next an hour later
        scan_rate_pps=2000,
        scan_reply_wait_s=0.3,
    )

    async def done() -> list[d.Scan]:
        page = await stack.call(d.SCAN_LIST)
        return [s for s in page.items if s.state is d.ScanState.DONE]

    scans = await async_wait_for(done, 20, "the scheduled scan")
    assert [(s.cidr, s.interface, s.answered) for s in scans] == [(CIDR, link.host, 3)]
    with pytest.raises(ValidationFailed) as caught:
        await stack.call(d.SCAN_START, cidr=CIDR, interface="mbd-missing0")
    assert caught.value.field == "interface"
