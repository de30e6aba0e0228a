"""Real DHCP clients against metalbus: busybox udhcpc and ISC dhclient, each in a network
namespace this test creates, joined to the server's side by a veth pair (10.213.7.0/24
inside it only). Needs root; every namespace and veth is deleted afterwards, even on failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from metalbus.shared.contract import ipam as c
from metalbus.shared.contract.ipam import AddressType
from metalbus.shared.subjects import stream_name
from tests.boot.conftest import Stack
from tests.conftest import skip_or_fail
from tests.helpers import async_wait_for

SERVER_IP = "10.213.7.1"
UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with deconfig|bound|renew|leasefail|nak; it records what it got.
echo "$1 ip=$ip subnet=$subnet router=$router dns=$dns domain=$domain mtu=$mtu \
ntpsrv=$ntpsrv lease=$lease serverid=$serverid" >> "{log}"
case "$1" in
  bound|renew) ip addr replace "$ip/$subnet" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
"""
DHCLIENT_SCRIPT = """#!/bin/sh
# dhclient-script's interface: $reason and new_* variables.
echo "$reason ip=$new_ip_address router=$new_routers dns=$new_domain_name_servers \
domain=$new_domain_name mtu=$new_interface_mtu ntp=$new_ntp_servers" >> "{log}"
case "$reason" in
  BOUND|RENEW|REBOOT) ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  RELEASE|EXPIRE|STOP) ip addr flush dev "$interface" ;;
esac
"""


@dataclass
class Veth:
    namespace: str
    host: str  # the server's side, in this namespace
    peer: str  # the client's side, inside ``namespace``
    mac: str


def _ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def veth() -> Iterator[Veth]:
    if os.geteuid() != 0:
        skip_or_fail("real DHCP clients need root to create network namespaces")
    for tool in ("ip", "busybox", "dhclient"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (scripts/install-system-packages.sh)")
    tag = uuid.uuid4().hex[:6]
    v = Veth(f"mbdhcp-{tag}", f"mbs{tag}", f"mbc{tag}", "")
    try:
        _ip("netns", "add", v.namespace)
        _ip("link", "add", v.host, "type", "veth", "peer", "name", v.peer)
        _ip("link", "set", v.peer, "netns", v.namespace)
        _ip("addr", "add", f"{SERVER_IP}/24", "dev", v.host)
        _ip("link", "set", v.host, "up")
        _ip("-n", v.namespace, "link", "set", "lo", "up")
        _ip("-n", v.namespace, "link", "set", v.peer, "up")
        v.mac = _ip("-n", v.namespace, "-br", "link", "show", v.peer).split()[2]
        yield v
    finally:
        for pid in subprocess.run(
            ["ip", "netns", "pids", v.namespace], capture_output=True, text=True
        ).stdout.split():
            os.kill(int(pid), signal.SIGKILL)  # clients this test started in its namespace
        subprocess.run(["ip", "netns", "del", v.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", v.host], capture_output=True)


def script(path: Path, text: str, log: Path) -> Path:
    path.write_text(text.format(log=log))
    path.chmod(0o755)
    return path


def lines(log: Path, word: str) -> list[dict[str, str]]:
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        head, *fields = line.split()
        if head == word:
            found.append(dict(f.split("=", 1) for f in fields if "=" in f))
    return found


async def run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(errors="replace")


async def events_applied(stack: Stack, after_seq: int = 0) -> bool:
    """boot's consumer of ipam's events has nothing pending, and ipam's stream has moved
    past ``after_seq`` (its outbox relay published what the test just changed)."""
    last = (await stack.bus.js.stream_info(stream_name("ipam"))).state.last_seq
    info = await stack.bus.js.consumer_info(stream_name("ipam"), "boot-dhcp")
    return last > after_seq and info.num_pending == 0 and info.num_ack_pending == 0


async def test_udhcpc_and_dhclient_get_leases_renew_release_and_a_reservation(
    stack: Stack, veth: Veth, tmp_path: Path
) -> None:
    await stack.serve("10.213.7.0/24", SERVER_IP, "10.213.7.100", "10.213.7.150")
    await stack.start_boot(dhcp_interfaces=[veth.host], lease_time_s=600)
    netns = ["ip", "netns", "exec", veth.namespace]

    # busybox udhcpc: DORA with every option it can print, then renew and release.
    log = tmp_path / "udhcpc.log"
    udhcpc = await asyncio.create_subprocess_exec(
        *netns,
        "busybox",
        "udhcpc",
        "-f",
        "-i",
        veth.peer,
        "-s",
        str(script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT, log)),
        "-t",
        "20",
        "-T",
        "1",
        "-O",
        "mtu",
        "-O",
        "ntpsrv",
        "-O",
        "domain",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        bound = (await async_wait_for(lambda: lines(log, "bound"), 30, "udhcpc bound"))[0]
        assert bound["ip"] == "10.213.7.100" and bound["subnet"] == "255.255.255.0"
        assert bound["router"] == SERVER_IP and bound["serverid"] == SERVER_IP
        assert bound["dns"] == "10.250.0.53" and bound["ntpsrv"] == "10.250.0.123"
        assert bound["domain"] == "metalbus.test" and bound["mtu"] == "1400"
        assert bound["lease"] == "600"

        async def leased_in_ipam() -> c.IpAddress | None:
            found = (await stack.addresses()).get("10.213.7.100")
            return found if found is not None and found.alloc_type is AddressType.DHCP else None

        recorded = await async_wait_for(leased_in_ipam, 10, "ipam to record the lease")
        assert recorded.mac == veth.mac

        # SIGUSR1: renew now (a unicast REQUEST from 10.213.7.100 to the server).
        udhcpc.send_signal(signal.SIGUSR1)
        renewed = await async_wait_for(lambda: lines(log, "renew"), 15, "udhcpc renewed")
        assert renewed[0]["ip"] == "10.213.7.100"
        # SIGUSR2: release; ipam frees the address when boot reports the end.
        udhcpc.send_signal(signal.SIGUSR2)

        async def freed_in_ipam() -> bool:
            return "10.213.7.100" not in await stack.addresses()

        await async_wait_for(freed_in_ipam, 15, "ipam to free the released lease")
    finally:
        if udhcpc.returncode is None:
            udhcpc.terminate()
        await udhcpc.wait()

    # ISC dhclient with a host reservation made while boot runs (it arrives as an event).
    before = (await stack.bus.js.stream_info(stream_name("ipam"))).state.last_seq
    await stack.call(c.ADDRESS_ALLOCATE, ip="10.213.7.20", mac=veth.mac, hostname="node20")
    await async_wait_for(lambda: events_applied(stack, before), 10, "boot to apply the event")
    dlog = tmp_path / "dhclient.log"
    files = [
        "-sf",
        str(script(tmp_path / "dhclient.sh", DHCLIENT_SCRIPT, dlog)),
        "-lf",
        str(tmp_path / "dhclient.leases"),
        "-pf",
        str(tmp_path / "dhclient.pid"),
    ]
    code, out = await run(*netns, "dhclient", "-1", "-v", *files, veth.peer)
    assert code == 0, out
    got = lines(dlog, "BOUND")
    assert got and got[0]["ip"] == "10.213.7.20", out
    assert got[0]["router"] == SERVER_IP and got[0]["mtu"] == "1400"
    assert got[0]["dns"] == "10.250.0.53" and got[0]["domain"] == "metalbus.test"
    code, out = await run(*netns, "dhclient", "-r", "-v", *files, veth.peer)
    assert code == 0, out
    assert "DHCPRELEASE" in out
    assert stack.metric("metalbus_dhcp_received_total", type="release") >= 2
    assert stack.metric("metalbus_dhcp_dropped_total", reason="malformed") == 0
