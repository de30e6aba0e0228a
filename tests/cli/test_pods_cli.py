"""KVM hosts from the CLI, on libvirt's test driver: MAAS's ``pod update`` line as written,
compose with its progress, VMs, and bad input."""

from __future__ import annotations

from metalbus.cli.output import CONFLICT, NOT_FOUND, USAGE
from tests.cli.conftest import System
from tests.compose.conftest import KVM


async def test_pods_end_to_end(admin: System) -> None:
    await admin.compose.network(untagged_dhcp=False, maas_dhcp=True)
    ok = admin.ok
    pod = await ok("admin", "pod", "add", f"power_address={KVM}", "name=kvm1", "tags=lab,ssd")
    assert (pod["name"], pod["tags"], pod["cores"]) == ("kvm1", ["lab", "ssd"], 8)
    pid = str(pod["id"])

    # MAAS's line, exactly as written.
    ran = await admin.cli(
        "admin", "pod", "update", pid, "host=10.0.0.2", "default_macvlan_mode=vepa"
    )
    assert ran.code == 0, ran.stderr
    assert "vepa" in ran.stdout and "10.0.0.2" in ran.stdout
    shown = await ok("admin", "kvm-host", "show", pid)
    assert (shown["host_ip"], shown["default_macvlan_mode"]) == ("10.0.0.2", "vepa")
    assert [p["name"] for p in await ok("admin", "pods", "list")] == ["kvm1"]
    assert (await ok("admin", "vm-host", "refresh", pid))["refreshed_at"] is not None

    composed = await admin.cli(
        "admin", "pod", "compose", pid, "hostname=web1", "storage=root:4", "cores=2", "memory=1024"
    )
    assert composed.code == 0, composed.stderr
    # The progress followed the compose events on the live stream.
    assert "[1/1] composed web1" in composed.stderr, composed.stderr
    assert "web1" in composed.stdout
    vms = [v for v in await ok("admin", "vms", "list", "--host", pid) if v["composed"]]
    assert [(v["name"], v["cores"], v["memory"]) for v in vms] == [("web1", 2, 1024)]
    vm = str(vms[0]["id"])
    assert (await ok("admin", "vm", "show", vm))["name"] == "web1"
    xml = await admin.cli("admin", "vms", "xml", vm)
    assert xml.code == 0 and "<domain" in xml.stdout
    two = await ok("admin", "pod", "compose", pid, "count=2", "storage=root:2")
    assert len(two["vms"]) == 2
    await ok("admin", "vms", "decompose", vm)
    await admin.fails(NOT_FOUND, "id", "admin", "vms", "show", vm)
    await ok("admin", "pod", "delete", pid, "--decompose")
    assert await ok("admin", "pods", "list") == []


async def test_pod_bad_input_names_the_field(admin: System) -> None:
    pod = await admin.ok("admin", "pod", "add", f"uri={KVM}")
    pid = str(pod["id"])
    line = await admin.fails(
        USAGE, "default_macvlan_mode", "admin", "pod", "update", pid, "host=10.0.0.2",
        "default_macvlan_mode=sideways",
    )  # fmt: skip
    assert "(422 " in line
    await admin.fails(USAGE, "cpu_over_commit_ratio", "admin", "pod", "add", f"uri={KVM}",
                      "cpu_over_commit_ratio=0")  # fmt: skip
    await admin.fails(USAGE, "storage", "admin", "pod", "compose", pid, "storage=root:x")
    await admin.fails(CONFLICT, "cores", "admin", "pod", "compose", pid, "cores=64")
    await admin.fails(NOT_FOUND, "id", "admin", "pod", "show", "999")
