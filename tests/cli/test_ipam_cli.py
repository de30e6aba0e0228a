"""fabrics, vlans, spaces, subnets, static-routes, ipranges, ipaddresses from the CLI."""

from __future__ import annotations

from metalbus.cli.output import CONFLICT, NOT_FOUND, USAGE
from tests.cli.conftest import System


async def test_network_objects_end_to_end(admin: System) -> None:
    cli, ok = admin.cli, admin.ok
    fabric = await ok("admin", "fabrics", "create", "name=dc1", "description=lab")
    assert fabric["name"] == "dc1"
    table = await cli("admin", "fabrics", "list")
    assert table.code == 0 and "dc1" in table.stdout and "default_vlan_id" in table.stdout
    space = await ok("admin", "spaces", "create", "name=storage")
    vlan = await ok(
        "admin", "vlans", "create", f"fabric_id={fabric['id']}", "vid=20", f"space_id={space['id']}"
    )
    assert (vlan["vid"], vlan["space_id"]) == (20, space["id"])
    assert [v["vid"] for v in await ok("admin", "vlans", "list", f"fabric_id={fabric['id']}")] == [
        0,
        20,
    ]
    updated = await ok("admin", "vlan", "update", str(vlan["id"]), "mtu=9000", "name=jumbo")
    assert (updated["mtu"], updated["name"]) == (9000, "jumbo")

    subnet = await ok(
        "admin", "subnets", "create", "cidr=10.0.0.0/24", f"vlan_id={fabric['default_vlan_id']}",
        "gateway_ip=10.0.0.1", "dns_servers=10.0.0.2,10.0.0.3",
    )  # fmt: skip
    assert subnet["dns_servers"] == ["10.0.0.2", "10.0.0.3"]
    other = await ok("admin", "subnets", "create", "cidr=10.1.0.0/24", f"vlan_id={vlan['id']}")
    assert (await ok("admin", "subnet", "show", str(subnet["id"])))["cidr"] == "10.0.0.0/24"
    iprange = await ok(
        "admin", "ipranges", "create", f"subnet_id={subnet['id']}", "type=dynamic",
        "start_ip=10.0.0.100", "end_ip=10.0.0.199",
    )  # fmt: skip
    assert iprange["size"] == 100
    route = await ok(
        "admin", "static-routes", "create", f"source_subnet_id={subnet['id']}",
        f"destination_subnet_id={other['id']}", "gateway_ip=10.0.0.254",
    )  # fmt: skip
    assert route["metric"] is not None
    reserved = await ok(
        "admin", "ipaddresses", "reserve", f"subnet_id={subnet['id']}", "hostname=printer"
    )
    assert reserved["alloc_type"] == "user_reserved" and reserved["ip"].startswith("10.0.0.")
    given = await ok("admin", "ipaddresses", "reserve", "ip=10.0.0.50", "mac=52:54:00:00:00:50")
    listed = await ok("admin", "ipaddresses", "list", f"subnet_id={subnet['id']}")
    assert {a["ip"] for a in listed} == {reserved["ip"], "10.0.0.50"}
    assert (await ok("admin", "ipaddresses", "show", str(given["id"])))[
        "mac"
    ] == "52:54:00:00:00:50"
    stats = await ok("admin", "subnets", "statistics", str(subnet["id"]), "--free-blocks", "2")
    assert stats["used"] >= 2 and len(stats["free_blocks"]) <= 2
    stats_table = await cli("admin", "subnets", "statistics", str(subnet["id"]))
    assert stats_table.code == 0 and "utilisation" in stats_table.stdout

    # Clean up through the CLI too: release, delete, and a delete refused without --force.
    await ok("admin", "ipaddresses", "release", "ip=10.0.0.50")
    await ok("admin", "static-routes", "delete", str(route["id"]))
    await ok("admin", "ipranges", "delete", str(iprange["id"]))
    await admin.fails(CONFLICT, "id", "admin", "subnets", "delete", str(subnet["id"]))
    await ok("admin", "subnets", "delete", str(subnet["id"]), "--force")
    await ok("admin", "fabrics", "delete", str(fabric["id"]), "--force")
    await admin.fails(NOT_FOUND, "id", "admin", "fabrics", "show", str(fabric["id"]))
    await ok("admin", "spaces", "update", str(space["id"]), "description=")
    await ok("admin", "spaces", "delete", str(space["id"]))


async def test_bad_input_names_the_field(admin: System) -> None:
    fails = admin.fails
    fabric = await admin.ok("admin", "fabrics", "create", "name=dc2")
    vlan0 = str(fabric["default_vlan_id"])
    await fails(USAGE, "name", "admin", "fabrics", "create", "name=bad name!")
    await fails(USAGE, "vid", "admin", "vlans", "create", f"fabric_id={fabric['id']}", "vid=5000")
    await fails(USAGE, "colour", "admin", "spaces", "create", "name=ok", "colour=blue")
    await fails(USAGE, "cidr", "admin", "subnets", "create", "cidr=10.0.0.0/33", f"vlan_id={vlan0}")
    subnet = await admin.ok("admin", "subnets", "create", "cidr=10.9.0.0/24", f"vlan_id={vlan0}")
    await fails(
        USAGE, "start_ip", "admin", "ipranges", "create", f"subnet_id={subnet['id']}",
        "type=dynamic", "start_ip=10.8.0.1", "end_ip=10.9.0.20",
    )  # fmt: skip
    await fails(
        USAGE, "gateway_ip", "admin", "static-routes", "create", f"source_subnet_id={subnet['id']}",
        f"destination_subnet_id={subnet['id']}", "gateway_ip=nope",
    )  # fmt: skip
    await fails(USAGE, "ip", "admin", "ipaddresses", "reserve", "ip=300.1.1.1")
    # The CLI's own refusals: a filter the list does not take, an argument without "=".
    await fails(USAGE, "colour", "admin", "subnets", "list", "colour=blue")
    await fails(USAGE, "'cidr'", "admin", "subnets", "create", "cidr")
