"""MAAS's address rules, bad input, events, and what ipam learns from boot and discovery."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from metalbus.shared import subjects
from metalbus.shared.bus import Bus, StreamSettings
from metalbus.shared.contract import ipam as c
from metalbus.shared.contract.boot import LeaseCommitted, LeaseEnded
from metalbus.shared.contract.discovery import NeighbourCleared, NeighbourNew
from metalbus.shared.errors import (
    AddressExhausted,
    Conflict,
    MetalbusError,
    NotFound,
    ValidationFailed,
)
from metalbus.shared.events import new_event, utcnow
from tests.helpers import async_wait_for
from tests.ipam.conftest import IpamUnderTest


async def fails(call, error: type[MetalbusError], field: str | None) -> MetalbusError:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as caught:
        await call
    assert caught.value.field == field, caught.value
    return caught.value


async def test_fabric_comes_with_untagged_vlan_and_vids_are_unique(ipam: IpamUnderTest) -> None:
    fabric = await ipam.call(c.FABRIC_CREATE, name="edge")
    default = await ipam.call(c.VLAN_GET, id=fabric.default_vlan_id)
    assert (default.fabric_id, default.vid, default.name) == (fabric.id, 0, "untagged")
    vlan = await ipam.call(c.VLAN_CREATE, fabric_id=fabric.id, vid=100, mtu=9000)
    await fails(ipam.call(c.VLAN_CREATE, fabric_id=fabric.id, vid=100), Conflict, "vid")
    await fails(ipam.call(c.FABRIC_CREATE, name="edge"), Conflict, "name")
    with pytest.raises(ValueError):  # refused before it leaves: the contract validates
        c.VlanCreate(fabric_id=fabric.id, vid=4095)
    raw = json.dumps({"fabric_id": fabric.id, "vid": 4095}).encode()
    reply = await ipam.bus.nc.request(c.VLAN_CREATE.subject, raw, timeout=5)
    assert json.loads(reply.data)["field"] == "vid"
    await fails(ipam.call(c.VLAN_CREATE, fabric_id=9999, vid=5), NotFound, "fabric_id")
    await fails(ipam.call(c.VLAN_DELETE, id=fabric.default_vlan_id), Conflict, "id")
    page = await ipam.call(c.VLAN_LIST, fabric_id=fabric.id)
    assert [v.vid for v in page.items] == [0, 100]
    assert vlan.mtu == 9000
    await fails(
        ipam.call(c.VLAN_UPDATE, id=vlan.id, changes=c.VlanUpdate(dhcp_on=True)),
        ValidationFailed,
        "changes.dhcp_on",
    )


async def test_bad_subnets_and_ranges_are_refused_and_change_nothing(ipam: IpamUnderTest) -> None:
    await fails(ipam.call(c.SUBNET_CREATE, cidr="10.0.0.0/33"), ValidationFailed, "cidr")
    await fails(ipam.call(c.SUBNET_CREATE, cidr="banana"), ValidationFailed, "cidr")
    error = await fails(ipam.call(c.SUBNET_CREATE, cidr="10.0.0.5/24"), ValidationFailed, "cidr")
    assert "10.0.0.0/24" in error.message
    await fails(
        ipam.call(c.SUBNET_CREATE, cidr="10.0.0.0/24", gateway_ip="10.9.9.9"),
        ValidationFailed,
        "gateway_ip",
    )
    await fails(ipam.call(c.SUBNET_CREATE, cidr="10.0.0.0/24", vlan_id=999), NotFound, "vlan_id")
    assert (await ipam.call(c.SUBNET_LIST)).items == []
    v4 = await ipam.call(c.SUBNET_CREATE, cidr="10.0.0.0/24", gateway_ip="10.0.0.1")
    v6 = await ipam.call(c.SUBNET_CREATE, cidr="2001:db8::/64")
    await fails(ipam.call(c.SUBNET_CREATE, cidr="10.0.0.128/25"), Conflict, "cidr")

    def new_range(subnet_id: int, start: str, end: str, kind: str = "reserved"):  # type: ignore[no-untyped-def]
        return ipam.call(c.RANGE_CREATE, subnet_id=subnet_id, type=kind, start_ip=start, end_ip=end)

    await fails(new_range(v4.id, "10.0.1.10", "10.0.1.20"), ValidationFailed, "start_ip")
    await fails(new_range(v4.id, "10.0.0.10", "10.0.1.20"), ValidationFailed, "end_ip")
    await fails(new_range(v4.id, "10.0.0.20", "10.0.0.10"), ValidationFailed, "end_ip")
    await fails(new_range(v4.id, "10.0.0.0", "10.0.0.10"), ValidationFailed, "start_ip")
    await fails(new_range(v4.id, "10.0.0.1", "10.0.0.10"), ValidationFailed, "start_ip")
    await fails(new_range(v6.id, "10.0.0.10", "10.0.0.20"), ValidationFailed, "start_ip")
    await new_range(v4.id, "10.0.0.100", "10.0.0.150", "dynamic")
    error = await fails(new_range(v4.id, "10.0.0.140", "10.0.0.160"), ValidationFailed, "start_ip")
    assert "10.0.0.100-10.0.0.150" in error.message
    await fails(
        ipam.call(c.RANGE_CREATE, type="reserved", start_ip="192.0.2.1", end_ip="192.0.2.9"),
        NotFound,
        "start_ip",
    )
    assert len((await ipam.call(c.RANGE_LIST)).items) == 1
    stats = await ipam.call(c.SUBNET_STATISTICS, id=v4.id)
    assert stats.available == 254 - 1 - 51


async def test_managed_and_unmanaged_subnets_assign_from_different_pools(
    ipam: IpamUnderTest,
) -> None:
    managed = await ipam.call(c.SUBNET_CREATE, cidr="10.1.0.0/29", gateway_ip="10.1.0.1")
    await ipam.call(
        c.RANGE_CREATE, subnet_id=managed.id, type="dynamic", start_ip="10.1.0.2", end_ip="10.1.0.3"
    )
    got = [(await ipam.call(c.ADDRESS_ALLOCATE, subnet_id=managed.id)).ip for _ in range(3)]
    assert got == ["10.1.0.4", "10.1.0.5", "10.1.0.6"]
    await fails(ipam.call(c.ADDRESS_ALLOCATE, subnet_id=managed.id), AddressExhausted, "subnet_id")

    unmanaged = await ipam.call(c.SUBNET_CREATE, cidr="10.2.0.0/24", managed=False)
    await fails(
        ipam.call(c.ADDRESS_ALLOCATE, subnet_id=unmanaged.id), AddressExhausted, "subnet_id"
    )
    await fails(
        ipam.call(
            c.RANGE_CREATE,
            subnet_id=unmanaged.id,
            type="dynamic",
            start_ip="10.2.0.10",
            end_ip="10.2.0.20",
        ),
        ValidationFailed,
        "type",
    )
    await ipam.call(
        c.RANGE_CREATE,
        subnet_id=unmanaged.id,
        type="reserved",
        start_ip="10.2.0.50",
        end_ip="10.2.0.51",
    )
    got = [(await ipam.call(c.ADDRESS_ALLOCATE, subnet_id=unmanaged.id)).ip for _ in range(2)]
    assert got == ["10.2.0.50", "10.2.0.51"]
    # A given address outside the reserved ranges may still be assigned by hand.
    assert (await ipam.call(c.ADDRESS_ALLOCATE, ip="10.2.0.7")).subnet_id == unmanaged.id


async def test_next_free_takes_the_smallest_block_first(ipam: IpamUnderTest) -> None:
    subnet = await ipam.call(c.SUBNET_CREATE, cidr="10.3.0.0/24", gateway_ip="10.3.0.1")
    # Blocks: .2-.9 (8 addresses) and .21-.254 (234).
    await ipam.call(
        c.RANGE_CREATE,
        subnet_id=subnet.id,
        type="reserved",
        start_ip="10.3.0.10",
        end_ip="10.3.0.20",
    )
    await ipam.call(c.ADDRESS_ALLOCATE, ip="10.3.0.5")
    # Now .2-.4 (3), .6-.9 (4) and .21-.254: the lowest address of the smallest block.
    first = await ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id)
    assert first.ip == "10.3.0.2"
    stats = await ipam.call(c.SUBNET_STATISTICS, id=subnet.id)
    assert [b.start for b in stats.free_blocks] == ["10.3.0.3", "10.3.0.6", "10.3.0.21"]
    assert stats.largest_free_block.size == 234
    assert stats.ranges[0].total == 11


async def test_given_addresses_follow_the_rules(ipam: IpamUnderTest) -> None:
    subnet = await ipam.call(
        c.SUBNET_CREATE, cidr="10.4.0.0/24", gateway_ip="10.4.0.1", dns_servers=["10.4.0.2"]
    )
    await ipam.call(
        c.RANGE_CREATE,
        subnet_id=subnet.id,
        type="dynamic",
        start_ip="10.4.0.100",
        end_ip="10.4.0.199",
    )
    await ipam.call(
        c.RANGE_CREATE,
        subnet_id=subnet.id,
        type="reserved",
        start_ip="10.4.0.10",
        end_ip="10.4.0.19",
    )
    taken = await ipam.call(
        c.ADDRESS_ALLOCATE, ip="10.4.0.50", owner_type="machine", owner_id="abc"
    )
    await fails(ipam.call(c.ADDRESS_ALLOCATE, ip="10.4.0.50"), Conflict, "ip")
    await fails(ipam.call(c.ADDRESS_ALLOCATE, ip="10.4.0.150"), Conflict, "ip")
    await fails(ipam.call(c.ADDRESS_ALLOCATE, ip="10.4.0.1"), Conflict, "ip")
    await fails(ipam.call(c.ADDRESS_ALLOCATE, ip="10.4.0.2"), Conflict, "ip")
    await fails(ipam.call(c.ADDRESS_ALLOCATE, ip="10.4.0.255"), ValidationFailed, "ip")
    await fails(
        ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id, ip="10.5.0.1"), ValidationFailed, "ip"
    )
    await fails(ipam.call(c.ADDRESS_ALLOCATE, ip="192.0.2.1"), NotFound, "ip")
    await fails(
        ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id, alloc_type="dhcp"),
        ValidationFailed,
        "alloc_type",
    )
    reserved = await ipam.call(c.ADDRESS_ALLOCATE, ip="10.4.0.12", alloc_type="user_reserved")
    assert reserved.alloc_type == c.AddressType.USER_RESERVED
    await fails(
        ipam.call(
            c.RANGE_CREATE,
            subnet_id=subnet.id,
            type="dynamic",
            start_ip="10.4.0.40",
            end_ip="10.4.0.60",
        ),
        Conflict,
        "start_ip",
    )
    released = await ipam.call(c.ADDRESS_RELEASE, ip="10.4.0.50")
    assert released.id == taken.id
    await fails(ipam.call(c.ADDRESS_RELEASE, id=taken.id), NotFound, "id")


async def test_idempotency_keys_return_the_first_answer(ipam: IpamUnderTest) -> None:
    subnet = await ipam.call(c.SUBNET_CREATE, cidr="10.6.0.0/24")
    first = await ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id, idempotency_key="k1")
    again = await ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id, idempotency_key="k1")
    assert again == first
    other = await ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id, idempotency_key="k2")
    assert other.ip != first.ip
    await fails(
        ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id, hostname="x", idempotency_key="k1"),
        Conflict,
        "idempotency_key",
    )
    released = await ipam.call(c.ADDRESS_RELEASE, id=first.id, idempotency_key="r1")
    assert await ipam.call(c.ADDRESS_RELEASE, id=first.id, idempotency_key="r1") == released
    listed = await ipam.call(c.ADDRESS_LIST, subnet_id=subnet.id)
    assert [a.ip for a in listed.items] == [other.ip]


async def test_in_use_objects_are_deleted_only_with_force(ipam: IpamUnderTest) -> None:
    fabric = await ipam.call(c.FABRIC_CREATE)
    vlan = await ipam.call(c.VLAN_CREATE, fabric_id=fabric.id, vid=7)
    subnet = await ipam.call(c.SUBNET_CREATE, cidr="10.7.0.0/24", vlan_id=vlan.id)
    await ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id)
    await fails(ipam.call(c.SUBNET_DELETE, id=subnet.id), Conflict, "id")
    await fails(ipam.call(c.VLAN_DELETE, id=vlan.id), Conflict, "id")
    await fails(ipam.call(c.FABRIC_DELETE, id=fabric.id), Conflict, "id")
    assert (await ipam.call(c.SUBNET_GET, id=subnet.id)).cidr == "10.7.0.0/24"
    await ipam.call(c.VLAN_DELETE, id=vlan.id, force=True)
    await fails(ipam.call(c.SUBNET_GET, id=subnet.id), NotFound, "id")
    assert (await ipam.call(c.ADDRESS_LIST)).items == []
    await ipam.call(c.FABRIC_DELETE, id=fabric.id)
    await fails(ipam.call(c.VLAN_GET, id=fabric.default_vlan_id), NotFound, "id")


async def test_every_change_is_an_event(ipam: IpamUnderTest) -> None:
    fabric = await ipam.call(c.FABRIC_CREATE)
    subnet = await ipam.call(
        c.SUBNET_CREATE, cidr="10.8.0.0/29", vlan_id=fabric.default_vlan_id, low_free_threshold=50
    )
    rng = await ipam.call(
        c.RANGE_CREATE, subnet_id=subnet.id, type="dynamic", start_ip="10.8.0.1", end_ip="10.8.0.2"
    )
    await ipam.call(c.VLAN_UPDATE, id=fabric.default_vlan_id, changes=c.VlanUpdate(dhcp_on=True))
    mine = [await ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id) for _ in range(4)]
    await fails(ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id), AddressExhausted, "subnet_id")
    await ipam.call(c.ADDRESS_RELEASE, id=mine[0].id)
    await ipam.call(c.SUBNET_DELETE, id=subnet.id, force=True)
    expected = [
        "fabric.created",
        "vlan.created",
        "subnet.created",
        "range.created",
        "vlan.updated",
        "address.allocated",
        "subnet.low_on_addresses",  # 2 of 6 left: under 50 %, once, in the same commit
        "address.allocated",
        "address.allocated",
        "address.allocated",
        "subnet.exhausted",
        "address.released",
        "range.deleted",
        "subnet.deleted",
        "vlan.updated",  # no dynamic range left: DHCP goes off
    ]
    got: list[str] = []
    sub = await ipam.bus.js.subscribe(subjects.service_events("ipam"), ordered_consumer=True)
    try:

        async def collected() -> bool:
            while len(got) < len(expected):
                try:
                    msg = await sub.next_msg(timeout=0.2)
                except TimeoutError:
                    return False
                got.append(".".join(msg.subject.split(".")[3:]))
            return True

        await async_wait_for(collected, 20, "every ipam event")
    finally:
        await sub.unsubscribe()
    assert got == expected
    deleted_range = rng.id
    assert deleted_range


async def boot_and_discovery_streams(bus: Bus) -> None:
    for service in ("boot", "discovery"):
        await bus.ensure_stream(service, StreamSettings())


async def test_leases_from_boot_become_dhcp_addresses_and_expire(ipam: IpamUnderTest) -> None:
    await boot_and_discovery_streams(ipam.bus)
    subnet = await ipam.call(c.SUBNET_CREATE, cidr="10.9.0.0/24")
    await ipam.call(
        c.RANGE_CREATE,
        subnet_id=subnet.id,
        type="dynamic",
        start_ip="10.9.0.100",
        end_ip="10.9.0.199",
    )
    mac = "52:54:00:00:00:01"
    later = utcnow() + timedelta(hours=1)
    await ipam.bus.publish(new_event(LeaseCommitted(ip="10.9.0.100", mac=mac, expires_at=later)))
    await ipam.bus.publish(new_event(LeaseCommitted(ip="192.0.2.7", mac=mac, expires_at=later)))

    async def dhcp_addresses() -> list[c.IpAddress]:
        page = await ipam.call(c.ADDRESS_LIST, subnet_id=subnet.id, alloc_type="dhcp")
        return page.items

    leased = (await async_wait_for(dhcp_addresses, 20, "the lease to be recorded"))[0]
    assert (leased.ip, leased.mac) == ("10.9.0.100", mac)
    stats = await ipam.call(c.SUBNET_STATISTICS, id=subnet.id)
    assert stats.ranges[0].used == 1
    await ipam.bus.publish(new_event(LeaseEnded(ip="10.9.0.100", mac=mac, reason="released")))
    await async_wait_for(lambda: _none(dhcp_addresses()), 20, "the ended lease to be freed")
    # A lease whose end never comes is freed when it expires.
    soon = utcnow() + timedelta(milliseconds=300)
    await ipam.bus.publish(new_event(LeaseCommitted(ip="10.9.0.101", mac=mac, expires_at=soon)))
    await async_wait_for(dhcp_addresses, 20, "the second lease")
    await async_wait_for(lambda: _none(dhcp_addresses()), 20, "the expired lease to be freed")


async def _none(items) -> bool:  # type: ignore[no-untyped-def]
    return not await items


async def test_observed_addresses_count_as_used(ipam: IpamUnderTest) -> None:
    await boot_and_discovery_streams(ipam.bus)
    subnet = await ipam.call(c.SUBNET_CREATE, cidr="10.10.0.0/30")  # .1 and .2
    observed = NeighbourNew(
        ip="10.10.0.1", mac="52:54:00:aa:bb:cc", interface="eth0", seen_at=utcnow()
    )
    await ipam.bus.publish(new_event(observed))

    async def discovered() -> list[c.IpAddress]:
        return (await ipam.call(c.ADDRESS_LIST, alloc_type="discovered")).items

    await async_wait_for(discovered, 20, "the observation to be recorded")
    assert (await ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id)).ip == "10.10.0.2"
    await fails(ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id), AddressExhausted, "subnet_id")
    await ipam.bus.publish(new_event(NeighbourCleared(ip="10.10.0.1", mac="52:54:00:aa:bb:cc")))
    await async_wait_for(lambda: _none(discovered()), 20, "the cleared observation to go")
    assert (await ipam.call(c.ADDRESS_ALLOCATE, subnet_id=subnet.id)).ip == "10.10.0.1"


async def test_an_operator_can_claim_a_discovered_address(ipam: IpamUnderTest) -> None:
    await boot_and_discovery_streams(ipam.bus)
    await ipam.call(c.SUBNET_CREATE, cidr="10.11.0.0/24")
    observed = NeighbourNew(
        ip="10.11.0.9", mac="52:54:00:aa:bb:01", interface="eth0", seen_at=utcnow()
    )
    await ipam.bus.publish(new_event(observed))

    async def discovered() -> list[c.IpAddress]:
        return (await ipam.call(c.ADDRESS_LIST, alloc_type="discovered")).items

    await async_wait_for(discovered, 20, "the observation")
    claimed = await ipam.call(
        c.ADDRESS_ALLOCATE,
        ip="10.11.0.9",
        alloc_type="sticky",
        owner_type="device",
        owner_id="printer",
    )
    assert claimed.alloc_type == c.AddressType.STICKY
    assert await discovered() == []


async def test_dhcp_config_carries_ranges_reservations_and_relays(ipam: IpamUnderTest) -> None:
    fabric = await ipam.call(c.FABRIC_CREATE)
    subnet = await ipam.call(c.SUBNET_CREATE, cidr="10.12.0.0/24", vlan_id=fabric.default_vlan_id)
    await ipam.call(
        c.RANGE_CREATE,
        subnet_id=subnet.id,
        type="dynamic",
        start_ip="10.12.0.100",
        end_ip="10.12.0.110",
    )
    await ipam.call(c.VLAN_UPDATE, id=fabric.default_vlan_id, changes=c.VlanUpdate(dhcp_on=True))
    relay = await ipam.call(c.VLAN_CREATE, fabric_id=fabric.id, vid=20)
    await fails(
        ipam.call(c.VLAN_UPDATE, id=relay.id, changes=c.VlanUpdate(relay_vlan_id=relay.id)),
        ValidationFailed,
        "changes.relay_vlan_id",
    )
    await ipam.call(
        c.VLAN_UPDATE, id=relay.id, changes=c.VlanUpdate(relay_vlan_id=fabric.default_vlan_id)
    )
    await ipam.call(c.ADDRESS_ALLOCATE, ip="10.12.0.5", mac="52-54-00-00-00-05", hostname="node5")
    config = await ipam.call(c.DHCP_CONFIG)
    assert [v.vlan.id for v in config.vlans] == [fabric.default_vlan_id, relay.id]
    served = config.vlans[0].subnets[0]
    assert [(r.start_ip, r.end_ip) for r in served.dynamic_ranges] == [
        ("10.12.0.100", "10.12.0.110")
    ]
    assert [(h.ip, h.mac, h.hostname) for h in served.reservations] == [
        ("10.12.0.5", "52:54:00:00:00:05", "node5")
    ]
    await fails(ipam.call(c.RANGE_DELETE, id=served.dynamic_ranges[0].id), Conflict, "id")
