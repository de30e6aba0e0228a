"""Discoveries: real neighbours in a namespace joined with a real ipam, filtered and cleared.

In the namespace: the veth end (its MAC on an address ipam has reserved, and on a second
address ipam does not know) and a macvlan with a MAC of a registered vendor (Xensource's
00:16:3e) on an address nobody knows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from metalbus.discovery import oui
from metalbus.discovery.settings import OUI_FILES
from metalbus.shared.contract import discovery as d
from metalbus.shared.contract import ipam as c
from metalbus.shared.contract.boot import LeaseCommitted
from metalbus.shared.errors import NotFound, ValidationFailed
from metalbus.shared.events import new_event, utcnow
from tests.conftest import skip_or_fail
from tests.discovery.conftest import Link, Stack, announce, ip
from tests.helpers import async_wait_for

KNOWN = "10.213.9.10"  # reserved in ipam for the peer's MAC
SECOND = "10.213.9.11"  # the peer's MAC, an address ipam does not know
STRANGER = "10.213.9.12"  # a MAC and an address nobody knows
STRANGER_MAC = "00:16:3e:01:02:03"
HAVE_OUI = Path(OUI_FILES[0]).is_file()


async def listed(stack: Stack, **query: object) -> list[tuple[str, str]]:
    page = await stack.call(d.DISCOVERY_LIST, **query)
    return sorted((x.ip, x.mac) for x in page.items)


async def test_join_filters_vendor_and_clear(stack: Stack, link: Link) -> None:
    if not HAVE_OUI:
        skip_or_fail("ieee-data is not installed (scripts/install-system-packages.sh)")
    subnet = await stack.subnet("10.213.9.0/24")
    other = await stack.subnet("10.213.10.0/24")
    await stack.call(
        c.ADDRESS_ALLOCATE, ip=KNOWN, mac=link.peer_mac, alloc_type=c.AddressType.USER_RESERVED
    )
    ns = link.namespace
    ip("-n", ns, "addr", "add", f"{KNOWN}/24", "dev", link.peer)
    ip("-n", ns, "addr", "add", f"{SECOND}/24", "dev", link.peer)
    ip(
        "-n",
        ns,
        "link",
        "add",
        "link",
        link.peer,
        "name",
        "mv0",
        "address",
        STRANGER_MAC,
        "type",
        "macvlan",
        "mode",
        "bridge",
    )
    ip("-n", ns, "addr", "add", f"{STRANGER}/24", "dev", "mv0")
    ip("-n", ns, "link", "set", "mv0", "up")
    await stack.start_discovery(interfaces=[link.host])
    for address, device in ((KNOWN, None), (SECOND, None), (STRANGER, "mv0")):
        await announce(link, address, device)

    async def all_three() -> list[d.Discovery]:
        page = await stack.call(d.DISCOVERY_LIST)
        return page.items if len(page.items) == 3 else []

    found = {x.ip: x for x in await async_wait_for(all_three, 10, "three discoveries")}
    known, second, stranger = found[KNOWN], found[SECOND], found[STRANGER]
    assert (known.ip_known, known.mac_known) == (True, True)
    assert (second.ip_known, second.mac_known) == (False, True)
    assert (stranger.ip_known, stranger.mac_known) == (False, False)
    for x in found.values():
        assert (x.subnet_id, x.subnet_cidr) == (subnet.id, "10.213.9.0/24")
        assert (x.vlan_id, x.fabric_id) == (subnet.vlan_id, subnet.fabric_id)
        assert x.interface == link.host and x.count == 1 and x.vid is None
    vendors = oui.load(OUI_FILES)
    assert stranger.vendor is not None and stranger.vendor == vendors.vendor(STRANGER_MAC)
    assert known.vendor is None  # 52:54:00 is a locally administered (QEMU-style) MAC

    assert await listed(stack, unknown="both") == [(STRANGER, STRANGER_MAC)]
    assert await listed(stack, unknown="mac") == [(STRANGER, STRANGER_MAC)]
    assert await listed(stack, unknown="ip") == [
        (SECOND, link.peer_mac),
        (STRANGER, STRANGER_MAC),
    ]
    assert len(await listed(stack, subnet_id=subnet.id)) == 3
    assert await listed(stack, subnet_id=other.id) == []
    assert await listed(stack, mac=STRANGER_MAC) == [(STRANGER, STRANGER_MAC)]
    first = await stack.call(d.DISCOVERY_LIST, limit=2)
    rest = await stack.call(d.DISCOVERY_LIST, limit=2, after=first.next)
    assert len(first.items) == 2 and len(rest.items) == 1 and rest.next is None
    with pytest.raises(NotFound) as refused:
        await stack.call(d.DISCOVERY_LIST, subnet_id=999)
    assert refused.value.field == "subnet_id"

    # Make the stranger known: a sticky address of a device in ipam; no longer unknown.
    made = await stack.call(d.DISCOVERY_MAKE_KNOWN, ip=STRANGER, mac=STRANGER_MAC, hostname="xen1")
    assert (made.alloc_type, made.owner_type, made.owner_id) == (
        c.AddressType.STICKY,
        c.OwnerType.DEVICE,
        STRANGER_MAC,
    )
    assert (made.hostname, made.mac) == ("xen1", STRANGER_MAC)
    assert await listed(stack, unknown="both") == []
    assert await listed(stack, unknown="ip") == [(SECOND, link.peer_mac)]
    with pytest.raises(NotFound):
        await stack.call(d.DISCOVERY_MAKE_KNOWN, ip="10.213.9.99", mac=STRANGER_MAC)

    # Clear one by MAC and IP: the event goes out and ipam frees its DISCOVERED address.
    async def discovered(address: str) -> bool:
        page = await stack.call(c.ADDRESS_LIST, ip=address)
        return any(a.alloc_type is c.AddressType.DISCOVERED for a in page.items)

    await async_wait_for(lambda: discovered(SECOND), 10, "ipam to record the second address")
    cleared = await stack.call(d.DISCOVERY_CLEAR, mac=link.peer_mac, ip=SECOND)
    assert cleared.cleared == 1
    await async_wait_for(
        lambda: stack.seen(d.NeighbourCleared, ip=SECOND, mac=link.peer_mac), 10, "cleared"
    )

    async def freed() -> bool:
        return not await discovered(SECOND)

    await async_wait_for(freed, 10, "ipam to free it")
    assert await listed(stack, ip=SECOND) == []

    with pytest.raises(ValidationFailed) as unasked:
        await stack.call(d.DISCOVERY_CLEAR)  # clearing everything must be asked for
    assert unasked.value.field == "all"
    assert (await stack.call(d.DISCOVERY_CLEAR, all=True)).cleared == 2
    assert await listed(stack) == []
    # Seen again after a clear: new again.
    await announce(link, STRANGER, "mv0")
    await async_wait_for(lambda: len(stack.seen(d.NeighbourNew, ip=STRANGER)) == 2, 10, "new again")


def test_vendor_table_prefers_the_longest_assignment() -> None:
    table = oui.VendorTable()
    table.add("001122", "Large Block")
    table.add("0011223", "Medium Block")
    table.add("001122334", "Small Block")
    assert table.vendor("00:11:22:33:50:00") == "Medium Block"
    assert table.vendor("00:11:22:33:40:00") == "Small Block"
    assert table.vendor("00:11:22:40:00:00") == "Large Block"
    assert table.vendor("00:11:23:00:00:00") is None


async def test_dhcp_clients_the_boot_service_saw_are_discoveries(stack: Stack) -> None:
    await stack.bus.ensure_stream("boot")  # boot's stream, as boot itself would make it
    subnet = await stack.subnet("10.213.12.0/24")
    await stack.start_discovery()
    lease = LeaseCommitted(
        ip="10.213.12.50", mac="52:54:00:0c:00:32", expires_at=utcnow(), hostname="n50"
    )
    await stack.bus.publish(new_event(lease, subject=lease.ip))
    new = await async_wait_for(
        lambda: stack.seen(d.NeighbourNew, ip="10.213.12.50"), 10, "the leased client as new"
    )
    assert (new[0].mac, new[0].interface) == ("52:54:00:0c:00:32", "boot")

    async def listed_lease() -> list[d.Discovery]:
        return (await stack.call(d.DISCOVERY_LIST, ip="10.213.12.50")).items

    found = (await async_wait_for(listed_lease, 10, "the discovery"))[0]
    assert (found.subnet_id, found.ip_known, found.mac_known) == (subnet.id, False, False)
