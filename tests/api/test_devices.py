"""Devices and make-known through the api, with a real ipam (and discovery) on a real bus.

The inventory tests need nothing but the api and ipam. The make-known test listens on a
veth pair into a network namespace (tests/discovery/conftest.py): peers ARP there and the
discovery service reports them, as on a real network. Needs root for that one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from metalbus.discovery.service import DEFINITION as DISCOVERY
from metalbus.discovery.settings import DiscoverySettings
from metalbus.shared.bus import Bus
from metalbus.shared.contract.boot import PxeUnknownMac
from metalbus.shared.events import new_event
from metalbus.shared.runtime import ServiceRuntime
from tests.api.conftest import ApiUnderTest
from tests.api.test_ipam_api import call, problem
from tests.conftest import DatabaseFactory
from tests.discovery.conftest import Link, announce, ip, link  # noqa: F401
from tests.helpers import async_wait_for

CIDR = "10.213.9.0/24"  # the namespace's network (tests/discovery/conftest.py)
MACHINE_MAC = "52:54:00:d0:00:01"


async def addresses(api: ApiUnderTest, **query: Any) -> list[dict[str, Any]]:
    page = await call(api, "GET", "/ipaddresses", params={"limit": 1000, **query})
    return [a for a in page["items"] if a["alloc_type"] != "discovered"]


async def ipam_ips(api: ApiUnderTest) -> set[str]:
    return {a["ip"] for a in await addresses(api)}


async def test_device_inventory_with_each_ip_assignment(api: ApiUnderTest) -> None:
    subnet = await call(api, "POST", "/subnets", {"cidr": CIDR}, expect=201)
    machine = await call(
        api, "POST", "/machines", {"interfaces": [{"name": "eth0", "mac": MACHINE_MAC}]}, expect=201
    )
    body = {
        "hostname": "printer",
        "description": "printer",
        "parent": machine["system_id"],
        "tags": ["office"],
        "interfaces": [
            {"mac": "52:54:00:d0:01:00", "ip_assignment": "static", "ip": "10.213.9.10"},
            {"mac": "52:54:00:d0:01:01", "ip_assignment": "static", "subnet_id": subnet["id"]},
            {"mac": "52:54:00:d0:01:02", "ip_assignment": "external", "ip": "10.213.9.30"},
            {"name": "wlan0", "mac": "52:54:00:d0:01:03", "ip_assignment": "dynamic"},
        ],
    }
    device = await call(api, "POST", "/devices", body, expect=201)
    system_id = device["system_id"]
    assert (device["hostname"], device["fqdn"], device["zone"]) == (
        "printer",
        "printer.maas",
        "default",
    )
    assert (device["parent"], device["tags"]) == (machine["system_id"], ["office"])
    eth0, eth1, eth2, wlan0 = device["interfaces"]
    assert [i["name"] for i in device["interfaces"]] == ["eth0", "eth1", "eth2", "wlan0"]
    assert eth0["ip"] == "10.213.9.10" and eth2["ip"] == "10.213.9.30"
    assert eth1["ip"] is not None and eth1["subnet_id"] == subnet["id"]
    assert wlan0["ip"] is None  # DHCP gives it; nothing is recorded
    recorded = {a["ip"]: a for a in await addresses(api, owner_id=system_id)}
    assert set(recorded) == {"10.213.9.10", eth1["ip"], "10.213.9.30"}
    for interface, kind in ((eth0, "sticky"), (eth1, "sticky"), (eth2, "user_reserved")):
        address = recorded[interface["ip"]]
        assert (address["alloc_type"], address["owner_type"]) == (kind, "device")
        assert (address["mac"], address["hostname"]) == (interface["mac"], "printer")
    assert await call(api, "GET", f"/devices/{system_id}") == device
    listed = await call(api, "GET", "/devices", params={"parent": machine["system_id"]})
    assert [d["system_id"] for d in listed] == [system_id]

    changed = await call(
        api, "PATCH", f"/devices/{system_id}", {"description": "laser printer", "parent": None}
    )
    assert (changed["description"], changed["parent"], changed["hostname"]) == (
        "laser printer",
        None,
        "printer",
    )

    # Interfaces come and go with their addresses.
    more = await call(
        api,
        "POST",
        f"/devices/{system_id}/interfaces",
        {"mac": "52:54:00:d0:01:04", "ip_assignment": "static", "ip": "10.213.9.11"},
        expect=201,
    )
    added = more["interfaces"][-1]
    assert (added["name"], added["ip"]) == ("eth3", "10.213.9.11")
    assert "10.213.9.11" in await ipam_ips(api)
    less = await call(api, "DELETE", f"/devices/{system_id}/interfaces/{added['id']}")
    assert len(less["interfaces"]) == 4
    assert "10.213.9.11" not in await ipam_ips(api)

    # A child device: its parent may not become its child (a loop).
    child = await call(
        api,
        "POST",
        "/devices",
        {"parent": system_id, "interfaces": [{"mac": "52:54:00:d0:02:00"}]},
        expect=201,
    )
    assert child["hostname"] == f"device-{child['system_id']}"
    for parent in (child["system_id"], system_id):
        await problem(
            api,
            "PATCH",
            f"/devices/{system_id}",
            {"parent": parent},
            status=422,
            field="body.parent",
        )

    await call(api, "DELETE", f"/devices/{system_id}", expect=204)
    assert await addresses(api, owner_id=system_id) == []
    await problem(api, "GET", f"/devices/{system_id}", status=404, field="path.system_id")
    orphan = await call(api, "GET", f"/devices/{child['system_id']}")
    assert orphan["parent"] is None

    async def device_events() -> list[str]:
        page = await call(
            api, "GET", "/events", params={"type": "io.metalbus.api.device.*", "after": 0}
        )
        found = [e["type"] for e in page["items"] if e["subject"] == system_id]
        return found if found and found[-1].endswith(".deleted.v1") else []

    kinds = [t.split(".")[-2] for t in await async_wait_for(device_events, 10, "device events")]
    assert kinds == ["created", "updated", "updated", "updated", "deleted"]


async def test_bad_devices_are_refused_and_nothing_is_half_written(api: ApiUnderTest) -> None:
    await call(api, "POST", "/subnets", {"cidr": CIDR}, expect=201)
    await call(
        api, "POST", "/machines", {"interfaces": [{"name": "eth0", "mac": MACHINE_MAC}]}, expect=201
    )
    taken = await call(
        api,
        "POST",
        "/ipaddresses",
        {"ip": "10.213.9.20", "alloc_type": "user_reserved"},
        expect=201,
    )

    def device(*interfaces: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {"interfaces": list(interfaces), **fields}

    ok = {"mac": "52:54:00:d0:03:00", "ip_assignment": "static", "ip": "10.213.9.21"}
    cases = [
        (device(ok, parent="nosuch"), 422, "body.parent"),
        (device(ok, zone="nosuch"), 422, "body.zone"),
        (device({"mac": MACHINE_MAC}), 409, "body.interfaces"),
        (
            device(ok, {"mac": "52:54:00:d0:03:01", "ip": "10.213.9.22"}),
            422,
            "body.interfaces.1.ip",
        ),
        (
            device({"mac": "52:54:00:d0:03:01", "ip_assignment": "external"}),
            422,
            "body.interfaces.0.ip",
        ),
        (
            device({"mac": "52:54:00:d0:03:01", "ip_assignment": "static"}),
            422,
            "body.interfaces.0.ip",
        ),
        # The first interface's address is allocated, the second's is taken: both go.
        (
            device(
                ok, {"mac": "52:54:00:d0:03:01", "ip_assignment": "static", "ip": "10.213.9.20"}
            ),
            409,
            "body.interfaces.1.ip",
        ),
        (
            # ipam records only addresses of subnets it knows, external ones too.
            device({"mac": "52:54:00:d0:03:01", "ip_assignment": "external", "ip": "192.0.2.9"}),
            404,
            "body.interfaces.0.ip",
        ),
    ]
    for body, status, field in cases:
        await problem(api, "POST", "/devices", body, status=status, field=field)
    assert await call(api, "GET", "/devices") == []
    assert await ipam_ips(api) == {taken["ip"]}

    first = await call(api, "POST", "/devices", device(ok, hostname="switch"), expect=201)
    await problem(
        api,
        "POST",
        "/devices",
        device({"mac": "52:54:00:d0:03:09"}, hostname="switch"),
        status=409,
        field="body.hostname",
    )
    base = f"/devices/{first['system_id']}"
    await problem(
        api, "POST", f"{base}/interfaces", {"mac": ok["mac"]}, status=409, field="body.mac"
    )
    await problem(
        api,
        "POST",
        f"{base}/interfaces",
        {"mac": "52:54:00:d0:03:02", "ip_assignment": "static", "ip": "10.213.9.20"},
        status=409,
        field="body.ip",
    )
    await problem(
        api,
        "POST",
        "/devices/nosuch/interfaces",
        {"mac": "52:54:00:d0:03:03"},
        status=404,
        field="path.system_id",
    )
    await problem(api, "DELETE", f"{base}/interfaces/999", status=404, field="path.interface_id")
    # A machine may not take a device's MAC either.
    await problem(
        api,
        "POST",
        "/machines",
        {"interfaces": [{"name": "eth0", "mac": ok["mac"]}]},
        status=409,
        field="body.interfaces",
    )
    assert await ipam_ips(api) == {taken["ip"], ok["ip"]}


# -- make-known ---------------------------------------------------------------------------


@pytest.fixture
async def discovery(
    api: ApiUnderTest,
    link: Link,  # noqa: F811
    db_factory: DatabaseFactory,
) -> AsyncIterator[Link]:
    url, schema = db_factory()
    runtime = ServiceRuntime(
        DISCOVERY,
        DiscoverySettings(
            nats_url=api.nats.url,
            database_url=url,
            database_schema=schema,
            interfaces=[link.host],
            flush_interval_s=0.05,
        ),
    )
    await runtime.start()
    try:
        yield link
    finally:
        await runtime.stop()


PEERS = {  # address -> the namespace's device that answers on it
    "10.213.9.40": None,  # the veth end itself
    "10.213.9.41": "mv1",
    "10.213.9.42": "mv2",
    "10.213.9.43": "mv3",
    "10.213.9.44": "mv4",
}


async def test_make_known_as_device_and_as_interface(api: ApiUnderTest, discovery: Link) -> None:
    ns = discovery.namespace
    await call(api, "POST", "/subnets", {"cidr": CIDR}, expect=201)
    macs: dict[str, str] = {}
    for n, (address, name) in enumerate(PEERS.items()):
        if name is not None:
            mac = f"00:16:3e:d0:00:{n:02x}"
            ip(
                "-n",
                ns,
                "link",
                "add",
                "link",
                discovery.peer,
                "name",
                name,
                "address",
                mac,
                "type",
                "macvlan",
                "mode",
                "bridge",
            )
            ip("-n", ns, "link", "set", name, "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", name or discovery.peer)
        macs[address] = mac if name is not None else discovery.peer_mac
        await announce(discovery, address, name)

    async def unknown() -> set[str]:
        page = await call(
            api, "GET", "/discovery/discoveries", params={"unknown": "ip", "limit": 100}
        )
        return {d["ip"] for d in page["items"]}

    async def all_seen() -> bool:
        return await unknown() == set(PEERS)

    await async_wait_for(all_seen, 10, "every peer discovered")
    base = "/discovery/discoveries/make-known"

    def found(address: str) -> dict[str, str]:
        return {"ip": address, "mac": macs[address]}

    # A device, static: sticky in ipam with the MAC; the discovery is known.
    made = await call(
        api,
        "POST",
        base,
        {
            **found("10.213.9.40"),
            "as": "device",
            "hostname": "printer",
            "description": "printer",
            "ip_assignment": "static",
        },
    )
    assert (made["as"], made["interface"], made["ip"], made["ip_assignment"]) == (
        "device",
        "eth0",
        "10.213.9.40",
        "static",
    )
    device = await call(api, "GET", f"/devices/{made['system_id']}")
    assert (device["hostname"], device["interfaces"][0]["mac"]) == ("printer", macs["10.213.9.40"])
    [address] = await addresses(api, ip="10.213.9.40")
    assert (address["alloc_type"], address["owner_type"], address["owner_id"], address["mac"]) == (
        "sticky",
        "device",
        made["system_id"],
        macs["10.213.9.40"],
    )

    # The older body (no "as", alloc_type): a device, external here.
    old = await call(
        api,
        "POST",
        base,
        {**found("10.213.9.41"), "alloc_type": "user_reserved", "hostname": "phone"},
    )
    assert (old["as"], old["ip_assignment"]) == ("device", "external")
    [address] = await addresses(api, ip="10.213.9.41")
    assert (address["alloc_type"], address["hostname"]) == ("user_reserved", "phone")

    # An interface of a machine: the machine gets it, with a static link holding the address.
    machine = await call(
        api, "POST", "/machines", {"interfaces": [{"name": "eth0", "mac": MACHINE_MAC}]}, expect=201
    )
    extra = await call(
        api,
        "POST",
        base,
        {**found("10.213.9.42"), "as": "interface", "machine": machine["system_id"]},
    )
    assert (extra["system_id"], extra["interface"], extra["ip"]) == (
        machine["system_id"],
        "eth1",
        "10.213.9.42",
    )
    grown = await call(api, "GET", f"/machines/{machine['system_id']}")
    eth1 = grown["interfaces"][1]
    assert (eth1["name"], eth1["mac"], [x["ip"] for x in eth1["links"]]) == (
        "eth1",
        macs["10.213.9.42"],
        ["10.213.9.42"],
    )
    [address] = await addresses(api, ip="10.213.9.42")
    assert (address["alloc_type"], address["owner_type"], address["owner_id"]) == (
        "sticky",
        "machine",
        machine["system_id"],
    )

    # An interface of a device, named.
    second = await call(
        api,
        "POST",
        base,
        {**found("10.213.9.43"), "as": "interface", "device": made["system_id"], "name": "wlan0"},
    )
    assert second["interface"] == "wlan0"
    device = await call(api, "GET", f"/devices/{made['system_id']}")
    assert [i["name"] for i in device["interfaces"]] == ["eth0", "wlan0"]

    # Those four left the unknown list (IP and MAC known); the fifth is still there.
    assert await unknown() == {"10.213.9.44"}
    mac_unknown = await call(api, "GET", "/discovery/discoveries", params={"unknown": "mac"})
    assert {d["ip"] for d in mac_unknown["items"]} == {"10.213.9.44"}

    # Bad input: nothing is written (no device, no address).
    devices_before = await call(api, "GET", "/devices")
    ips_before = await ipam_ips(api)
    fifth = found("10.213.9.44")
    for body, status, field in [
        ({**fifth, "as": "interface", "machine": "nosuch"}, 404, "body.machine"),
        ({**fifth, "as": "interface", "device": "nosuch"}, 404, "body.device"),
        ({**fifth, "as": "interface"}, 422, "body.machine"),
        (
            {**fifth, "as": "interface", "machine": machine["system_id"], "hostname": "x"},
            422,
            "body.hostname",
        ),
        ({**fifth, "as": "device", "parent": "nosuch"}, 422, "body.parent"),
        ({**fifth, "as": "device", "hostname": "printer"}, 409, "body.hostname"),
        ({**fifth, "ip_assignment": "static", "alloc_type": "sticky"}, 422, "body.alloc_type"),
        ({**fifth, "as": "thing"}, 422, "body.as"),
        ({"ip": "10.213.9.44", "mac": macs["10.213.9.40"]}, 404, "body.ip"),  # not seen so
        ({"ip": "10.213.9.40", "mac": macs["10.213.9.40"]}, 409, "body.mac"),  # known already
    ]:
        await problem(api, "POST", base, body, status=status, field=field)
    await call(
        api,
        "POST",
        "/ipaddresses",
        {"ip": "10.213.9.44", "alloc_type": "user_reserved"},
        expect=201,
    )
    await problem(api, "POST", base, {**fifth, "hostname": "camera"}, status=409, field="body.ip")
    assert await call(api, "GET", "/devices") == devices_before
    assert await ipam_ips(api) == ips_before | {"10.213.9.44"}
    await call(api, "POST", "/ipaddresses/release", {"ip": "10.213.9.44"})

    # Dynamic: a device with the MAC, no address recorded (DHCP gives it).
    dynamic = await call(
        api, "POST", base, {**fifth, "hostname": "camera", "ip_assignment": "dynamic"}
    )
    assert (dynamic["ip"], dynamic["address_id"]) == (None, None)
    assert "10.213.9.44" not in await ipam_ips(api)

    # Its MAC is known all the same (discovery follows the api's devices), its IP is not:
    # it leaves the MAC-unknown list and stays on the IP-unknown one.
    async def mac_unknown_ips() -> set[str]:
        page = await call(api, "GET", "/discovery/discoveries", params={"unknown": "mac"})
        return {d["ip"] for d in page["items"]}

    async def mac_now_known() -> bool:
        return not await mac_unknown_ips()

    await async_wait_for(mac_now_known, 10, "the dynamic device's MAC known to discovery")
    assert await unknown() == {"10.213.9.44"}

    # Deleting the machine releases the address made known for it.
    await call(api, "DELETE", f"/machines/{machine['system_id']}", expect=204)
    assert "10.213.9.42" not in await ipam_ips(api)


async def test_a_devices_mac_that_pxe_boots_is_not_enlisted(api: ApiUnderTest) -> None:
    device = await call(
        api, "POST", "/devices", {"interfaces": [{"mac": "52:54:00:d0:04:00"}]}, expect=201
    )
    bus = await Bus.connect(api.nats.url, service="tests")
    try:
        await bus.ensure_stream("boot")  # boot's stream, as boot itself would make it
        for mac in (device["interfaces"][0]["mac"], "52:54:00:d0:04:01"):
            await bus.publish(new_event(PxeUnknownMac(mac=mac), subject=mac))

        async def enlisted() -> list[dict[str, Any]]:
            return await call(api, "GET", "/machines")  # type: ignore[no-any-return]

        # Events are applied in order: once the second MAC is a machine, the first was seen.
        [machine] = await async_wait_for(enlisted, 10, "the unknown MAC enlisted")
        assert [i["mac"] for i in machine["interfaces"]] == ["52:54:00:d0:04:01"]
    finally:
        await bus.close()
