"""machines, zones and pools from the CLI: a VM composed on libvirt's test driver becomes a
machine, which is moved through its life by the CLI's actions."""

from __future__ import annotations

from typing import Any

import pytest

from metalbus.cli.output import CONFLICT, NOT_FOUND, USAGE
from tests.cli.conftest import System
from tests.compose.conftest import KVM
from tests.helpers import async_wait_for


async def _composed_machine(admin: System) -> dict[str, Any]:
    await admin.compose.network(untagged_dhcp=False, maas_dhcp=True)
    pod = await admin.ok("admin", "pod", "add", f"uri={KVM}")
    await admin.ok("admin", "pod", "compose", str(pod["id"]), "hostname=node1", "storage=root:2")

    async def made() -> list[Any]:
        return await admin.ok("admin", "machines", "list", "hostname=node1")

    return (await async_wait_for(made, 15, "the composed VM to become a machine"))[0]


@pytest.mark.usefixtures("test_domain")
async def test_machines_zones_pools(admin: System) -> None:
    ok = admin.ok
    machine = await _composed_machine(admin)
    sid = machine["system_id"]
    assert machine["status"] == "new"
    table = await admin.cli("admin", "machines", "list")
    assert table.code == 0 and "node1" in table.stdout

    zone = await ok("admin", "zones", "create", "name=lab", "description=rack 4")
    pool = await ok("admin", "pools", "create", "name=team-a")
    assert "lab" in [z["name"] for z in await ok("admin", "zones", "list")]
    await ok("admin", "zone", "update", str(zone["id"]), "description=rack 5")
    assert (await ok("admin", "zones", "show", str(zone["id"])))["description"] == "rack 5"
    moved = await ok("admin", "machine", "update", sid, "zone=lab", "pool=team-a", "tags=a,b")
    assert (moved["zone"], moved["pool"], moved["tags"]) == ("lab", "team-a", ["a", "b"])
    assert [m["system_id"] for m in await ok("admin", "machines", "list", "zone=lab")] == [sid]
    assert (await ok("admin", "pools", "show", str(pool["id"])))["name"] == "team-a"

    # Its BMC is made when a flow first needs it; MAAS's spelling gives it one now (the
    # test driver's own domain "test", which is running).
    await admin.fails(CONFLICT, "power", "admin", "machine", "power-on", sid)
    powered = await ok(
        "admin", "machine", "update", sid, "power_type=virsh",
        "power_parameters_uri=test:///default", "power_parameters_domain=test",
    )  # fmt: skip
    assert powered["power"]["bmc_id"] is not None
    assert (await ok("admin", "machine", "query-power-state", sid))["power_state"] == "on"
    assert (await ok("admin", "machine", "power-off", sid))["power_state"] == "off"
    assert (await ok("admin", "machine", "power-on", sid))["power_state"] == "on"

    assert (await ok("admin", "machine", "mark-broken", sid))["status"] == "broken"
    assert (await ok("admin", "machine", "mark-fixed", sid))["status"] == "ready"
    allocated = await ok("admin", "machines", "allocate", f"system_id={sid}", "compose=false")
    assert (allocated["system_id"], allocated["status"]) == (sid, "allocated")
    deploying = await ok("admin", "machine", "deploy", sid)
    assert deploying["status"] == "deploying"
    history = await ok("admin", "machine", "history", sid)
    assert [h["status"] for h in history][-3:] == ["ready", "allocated", "deploying"]

    aborted = await admin.cli("admin", "machine", "abort", sid, "--wait")
    assert aborted.code == 0, aborted.stderr
    # --wait follows the release flow's status changes and steps on the event stream. Its
    # boot_local step needs the boot service, which this system does not run: the flow
    # stays there, and --wait gives up at its deadline with exit code 1, saying so.
    released = await admin.cli("admin", "machine", "release", sid, "--wait", "--timeout", "3")
    assert released.code == 1, released.stderr
    lines = released.stderr.splitlines()
    assert lines[0] == "allocated -> releasing (by admin (bootstrap))", lines
    assert lines[-1] == "error: status: still releasing after 3s", lines

    await admin.fails(CONFLICT, "", "admin", "zones", "delete", str(zone["id"]))


async def test_machines_bad_input(admin: System) -> None:
    await admin.fails(NOT_FOUND, "system_id", "admin", "machine", "show", "nosuch")
    await admin.fails(USAGE, "status", "admin", "machines", "list", "status=sleepy")
    await admin.fails(USAGE, "cores", "admin", "machines", "allocate", "cores=0")
    await admin.fails(USAGE, "interfaces", "admin", "machines", "add", "hostname=n2")
    await admin.fails(USAGE, "name", "admin", "zones", "create", "name=no spaces please")
    await admin.fails(
        USAGE, "description", "admin", "pools", "create", "name=p", "description=" + "x" * 2000
    )
