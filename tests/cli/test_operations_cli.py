"""power, discoveries, events, tokens from the CLI, and --help with examples everywhere."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from typer.main import get_command

from metalbus.cli.output import AUTH, NOT_FOUND, USAGE
from metalbus.cli.resources import app as resources
from tests.cli.conftest import System
from tests.discovery.conftest import Link, announce, run_in
from tests.helpers import async_wait_for

NET = "10.213.9.0/24"  # the link fixture's network (the host's end is 10.213.9.1)
PEER = "10.213.9.20"


@pytest.mark.usefixtures("test_domain")
async def test_power(admin: System) -> None:
    ok = admin.ok
    drivers = await ok("admin", "power", "drivers")
    assert {"ipmi", "virsh", "manual"} <= {d["name"] for d in drivers}
    # libvirt's test driver has a running domain named "test".
    bmc = await ok(
        "admin", "power", "add", "name=vm-test", "driver=virsh", "settings.uri=test:///default",
        "settings.domain=test", "poll=false",
    )  # fmt: skip
    bid = str(bmc["id"])
    assert bmc["settings"]["domain"] == "test"
    assert (await ok("admin", "power", "query", bid))["power_state"] == "on"
    assert (await ok("admin", "power", "off", bid))["power_state"] == "off"
    assert (await ok("admin", "power", "on", bid))["power_state"] == "on"
    assert [b["name"] for b in await ok("admin", "power", "list")] == ["vm-test"]
    assert (await ok("admin", "power", "update", bid, "name=renamed"))["name"] == "renamed"
    table = await admin.cli("admin", "power", "show", bid)
    assert table.code == 0 and "renamed" in table.stdout
    await ok("admin", "power", "delete", bid)
    await admin.fails(NOT_FOUND, "id", "admin", "power", "show", bid)
    await admin.fails(USAGE, "driver", "admin", "power", "add", "name=x", "driver=telepathy")
    await admin.fails(
        USAGE, "settings.domain", "admin", "power", "add", "name=y", "driver=virsh",
        "settings.uri=test:///default",
    )  # fmt: skip


async def test_discoveries(admin: System, link: Link) -> None:
    """A neighbour announcing itself in a namespace is discovered, made a device, cleared."""
    ok = admin.ok
    assert await ok("admin", "discoveries", "list") == []
    await admin.start_discovery(interfaces=[link.host])
    fabric = await ok("admin", "fabrics", "create", "name=disc")
    vlan = fabric["default_vlan_id"]
    subnet = await ok("admin", "subnets", "create", f"cidr={NET}", f"vlan_id={vlan}")
    await run_in(link, "ip", "addr", "add", f"{PEER}/24", "dev", link.peer)
    await announce(link, PEER)

    async def seen() -> list[Any]:
        return await ok("admin", "discoveries", "list", "unknown=both", f"subnet_id={subnet['id']}")

    found = await async_wait_for(seen, 15, "the namespace's neighbour to be discovered")
    assert (found[0]["ip"], found[0]["mac"]) == (PEER, link.peer_mac)
    table = await admin.cli("admin", "discoveries", "list")
    assert table.code == 0 and PEER in table.stdout

    scan = await ok("admin", "discoveries", "scan", f"cidr={NET}", f"interface={link.host}")
    assert scan["cidr"] == NET
    assert [s["id"] for s in await ok("admin", "discoveries", "scans")] == [scan["id"]]
    assert (await ok("admin", "discoveries", "scan-status", str(scan["id"])))["id"] == scan["id"]

    device = await ok(
        "admin", "discoveries", "add-device", f"ip={PEER}", f"mac={link.peer_mac}",
        "hostname=printer",
    )  # fmt: skip
    assert (device["as"], device["ip"], device["mac"]) == ("device", PEER, link.peer_mac)
    cleared = await ok("admin", "discoveries", "clear", f"mac={link.peer_mac}")
    assert cleared["cleared"] == 1
    await admin.fails(USAGE, "cidr", "admin", "discoveries", "scan", "cidr=not-a-network")
    await admin.fails(USAGE, "mac", "admin", "discoveries", "clear", "mac=zz")
    await admin.fails(USAGE, "unknown", "admin", "discoveries", "list", "unknown=maybe")
    await admin.fails(USAGE, "mac", "admin", "discoveries", "clear")


async def test_events_tail_follows_the_live_stream(admin: System) -> None:
    await admin.ok("admin", "spaces", "create", "name=before")

    async def logged() -> dict | None:
        found = await admin.ok("admin", "events", "list", "--type", "io.metalbus.ipam.space.*")
        return next((e for e in found if e["data"]["space"]["name"] == "before"), None)

    before = await async_wait_for(logged, 10, "the space's event in the log")
    # Following from that event misses nothing, whenever the stream starts to listen: what
    # came after it is replayed from the log, the rest arrives live.
    follow = await admin.spawn(
        "admin", "events", "tail", "--follow", "--after", before["id"], "--count", "2",
        "--json", "--type", "io.metalbus.ipam.space.*",
    )  # fmt: skip
    try:
        await admin.ok("admin", "spaces", "create", "name=live1")
        await admin.ok("admin", "spaces", "create", "name=live2")
        stdout, stderr = await asyncio.wait_for(follow.communicate(), 30)
    finally:
        if follow.returncode is None:
            follow.kill()
            await follow.wait()
    assert follow.returncode == 0, stderr.decode()
    seen = [json.loads(line) for line in stdout.decode().splitlines() if line]
    assert [e["data"]["space"]["name"] for e in seen] == ["live1", "live2"]

    tail = await admin.cli("admin", "events", "tail", "-n", "3")
    assert tail.code == 0 and len(tail.stdout.strip().splitlines()) == 3
    assert "io.metalbus.ipam.space.created.v1" in tail.stdout
    await admin.fails(NOT_FOUND, "event_id", "admin", "events", "show", "no-such-event")


async def test_tokens(admin: System) -> None:
    made = await admin.ok("admin", "tokens", "create", "name=ci", "role=readonly")
    assert made["token"].startswith("mb_")
    assert {t["name"] for t in await admin.ok("admin", "tokens", "list")} >= {"ci"}
    ran = await admin.cli("login", "reader", admin.url, made["token"])
    assert ran.code == 0 and made["token"] not in ran.stdout
    assert (await admin.ok("reader", "tokens", "whoami"))["role"] == "readonly"
    # A reader cannot write: an auth failure, one line.
    await admin.fails(AUTH, "", "reader", "fabrics", "create", "name=nope")
    await admin.ok("admin", "tokens", "revoke", made["id"])
    await admin.fails(AUTH, "", "reader", "fabrics", "list")
    await admin.fails(USAGE, "role", "admin", "tokens", "create", "name=x", "role=wizard")


def _commands(group, path=()):  # type: ignore[no-untyped-def]
    for name, command in group.commands.items():
        if getattr(command, "hidden", False):
            continue
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


@pytest.mark.parametrize(
    "path",
    [p for p, c in _commands(get_command(resources)) if not hasattr(c, "commands")],
    ids=" ".join,
)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    from typer.testing import CliRunner

    from metalbus.cli.main import app

    ran = CliRunner().invoke(app, ["admin", *path, "--help"], env={"COLUMNS": "200"})
    assert ran.exit_code == 0, ran.output
    assert "Example: metalbus admin " in ran.stdout, ran.stdout
