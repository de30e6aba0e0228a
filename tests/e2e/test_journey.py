"""A machine's journey on real services and a real VM: QEMU (TCG) with its iPXE ROM
network-boots from metalbus's DHCP and HTTP boot, is enlisted as New, commissioned (the
ephemeral environment reports the VM's hardware to the api's callback), Ready, allocated,
deployed (the environment writes its marker to the disk and reports success), Deployed and
released.

Two variants. ``manual`` power: the test is the person who presses the button (starts
QEMU itself, the VM's tap and the veth fixture's peer on a bridge in the fixture's
namespace). ``virsh`` power: a domain defined directly (not composed) on a real libvirtd
(``qemu:///system``, the compose tests' fixture) on the bridge of its ``maas`` network, a
veth from there to boot's side; the power service's virsh driver starts it with PXE first.
Either way the VM powers itself off when the environment is done. boot's DHCP and HTTP boot
listen on the veth's host side (root namespace); the api listens on loopback, and a
forwarder on the veth's address lets the VM reach its callback routes.

Every stage's time is printed; a stage that misses its deadline fails with its name, the
VM's console and the machine's last events.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import libvirt
import pytest

from metalbus.boot.ephemeral.build import Built
from metalbus.shared.tasks import cancel_all
from tests.boot.test_real_clients import SERVER_IP, Veth, veth  # noqa: F401 (fixture)
from tests.compose.conftest import libvirtd  # noqa: F401 (fixture)
from tests.compose.qemu import URI, Libvirtd
from tests.e2e.vm import Vm, marker, need_root
from tests.helpers import async_wait_for
from tests.machines.conftest import Stack, ok, stack  # noqa: F401 (fixture)
from tests.power.conftest import free_port

MAC = "52:54:00:e2:e0:01"
CMDLINE = "console=ttyS0 panic=-1 quiet"
STAGE_DEADLINE_S = 90.0


@contextlib.asynccontextmanager
async def forwarder(listen: str, target_port: Callable[[], int]) -> AsyncIterator[int]:
    """TCP from ``listen``:<port> to 127.0.0.1:``target_port()``; yields the port."""
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port())
        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            tasks.add(asyncio.create_task(task))

    server = await asyncio.start_server(handle, listen, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await cancel_all(tasks)


class Journey:
    """The VM (QEMU started by the test: manual power), its stages and their times."""

    #: the machine's power once it is New; whether the test powers it on for the flows
    power: dict[str, Any] = {"driver": "manual", "settings": {}}
    by_hand = True

    def __init__(self, stack: Stack, veth: Veth | None, tmp_path: Path) -> None:  # noqa: F811
        self.stack = stack
        self.veth = veth
        self.tmp_path = tmp_path
        self.disk = Vm.make_disk(tmp_path / "disk.img")
        self.boots = 0
        self.vm: Vm | None = None
        self.times: list[tuple[str, float]] = []
        self.system_id: str | None = None

    def network(self) -> str:
        """A bridge in the namespace with the veth's peer and the VM's tap on it; the
        interface boot serves on."""
        assert self.veth is not None
        for argv in (
            ["link", "add", "br0", "type", "bridge"],
            ["link", "set", self.veth.peer, "master", "br0"],
            ["tuntap", "add", "tap0", "mode", "tap"],
            ["link", "set", "tap0", "master", "br0"],
            ["link", "set", "tap0", "up"],
            ["link", "set", "br0", "up"],
        ):
            subprocess.run(["ip", "-n", self.veth.namespace, *argv], check=True)
        return self.veth.host

    async def power_on(self) -> None:
        """The button: QEMU boots from the network (its virtio-net iPXE ROM)."""
        assert self.veth is not None
        self.boots += 1
        self.vm = Vm(self.tmp_path / f"console-{self.boots}.log", self.disk)
        await self.vm.start(
            "-boot", "n",
            "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
            prefix=("ip", "netns", "exec", self.veth.namespace),
        )  # fmt: skip

    async def powered_off(self) -> None:
        assert self.vm is not None
        await self.stage("the VM powers itself off", self.vm.wait_exit, STAGE_DEADLINE_S)

    async def stage(
        self, name: str, step: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        started = time.monotonic()
        try:
            result = await step(*args, **kwargs)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"stage '{name}' failed: {exc}\n{await self.context()}") from exc
        took = time.monotonic() - started
        self.times.append((name, took))
        print(f"stage {name}: {took:.1f} s")
        return result

    async def context(self) -> str:
        console = self.vm.text() if self.vm is not None else "(no VM started)"
        events = ""
        if self.system_id is not None:
            history = await self.stack.http.get(f"/machines/{self.system_id}/history")
            events = history.text[-2000:]
        return f"VM console:\n{console}\nmachine history: {events}"

    async def status(self, status: str, **expected: Any) -> dict[str, Any]:
        assert self.system_id is not None

        async def reached() -> dict[str, Any] | None:
            machine = await self.stack.machine(self.system_id or "")
            wanted = {"status": status, **expected}
            return machine if all(machine[k] == v for k, v in wanted.items()) else None

        found: dict[str, Any] = await async_wait_for(reached, STAGE_DEADLINE_S, status)
        return found


class VirshJourney(Journey):
    """A domain defined on the real libvirtd; the power service's virsh driver powers it."""

    by_hand = False

    def __init__(self, stack: Stack, daemon: Libvirtd, tmp_path: Path) -> None:  # noqa: F811
        super().__init__(stack, None, tmp_path)
        tag = secrets.token_hex(3)
        self.name = f"metalbus-journey-{tag}"
        self.power = {"driver": "virsh", "settings": {"uri": URI, "domain": self.name}}
        self.link, self.peer, self.bridge = f"mbjh{tag}", f"mbjp{tag}", f"mbjb{tag}"
        self.netns = daemon.netns or libvirtd_namespace()
        self.domain: Any = None
        self.vm = Vm(tmp_path / "console.log", self.disk)

    def run(self, *argv: str, inside: bool = False) -> None:
        prefix = ["ip", "netns", "exec", self.netns] if inside and self.netns else []
        subprocess.run([*prefix, "ip", *argv], check=True)

    def network(self) -> str:
        """A bridge where libvirtd runs (its own namespace, when the fixture started it) and
        a veth from boot's side (this namespace) to it; the domain's NIC on that bridge."""
        self.run("link", "add", self.link, "type", "veth", "peer", "name", self.peer)
        self.run("addr", "add", f"{SERVER_IP}/24", "dev", self.link)
        self.run("link", "set", self.link, "up")
        if self.netns:
            self.run("link", "set", self.peer, "netns", self.netns)
        self.run("link", "add", self.bridge, "type", "bridge", inside=True)
        self.run("link", "set", self.peer, "master", self.bridge, inside=True)
        self.run("link", "set", self.peer, "up", inside=True)
        self.run("link", "set", self.bridge, "up", inside=True)
        self.domain = libvirt.open(URI).defineXML(self.xml())
        return self.link

    def xml(self) -> str:
        assert self.vm is not None
        return f"""<domain type='qemu'>
  <name>{self.name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='network'/><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{self.disk}'/>
      <target dev='vda' bus='virtio'/><serial>MB-DISK-0001</serial>
    </disk>
    <interface type='bridge'>
      <source bridge='{self.bridge}'/><mac address='{MAC}'/><model type='virtio'/>
    </interface>
    <serial type='file'><source path='{self.vm.console}' append='on'/></serial>
  </devices>
</domain>"""

    async def power_on(self) -> None:
        """Switched on by hand once (an unknown machine); then the flows power it."""
        await asyncio.to_thread(self.domain.create)

    async def powered_off(self) -> None:
        async def off() -> bool:
            return not await asyncio.to_thread(self.domain.isActive)

        await self.stage("the VM powers itself off", async_wait_for, off, STAGE_DEADLINE_S, "off")

    def close(self) -> None:
        """The domain, the veth and the bridge go, each even when another fails."""
        if self.domain is not None:
            with contextlib.suppress(libvirt.libvirtError):
                if self.domain.isActive():
                    self.domain.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                self.domain.undefine()
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        subprocess.run([*prefix, "ip", "link", "del", self.bridge], capture_output=True)


def libvirtd_namespace() -> str | None:
    """The network namespace of the libvirtd that answers (another session may have started
    it in a namespace of its own), None for the root namespace."""
    found = subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True, text=True)
    for pid in found.stdout.split():
        name = subprocess.run(
            ["ip", "netns", "identify", pid], capture_output=True, text=True
        ).stdout.strip()
        return name or None
    return None


# One database per variant: a journey takes about 100 s under TCG, and both databases are
# covered between the two (the rest of the suite runs every flow on both).
@pytest.mark.parametrize("db_factory", ["postgresql"], indirect=True)
async def test_the_journey_with_virsh_power_on_a_real_libvirtd(
    stack: Stack,  # noqa: F811 (fixture)
    libvirtd: Libvirtd,  # noqa: F811 (fixture)
    ephemeral: tuple[Path, Built],
    tmp_path: Path,
) -> None:
    need_root()
    journey = VirshJourney(stack, libvirtd, tmp_path)
    try:
        await journey_on(journey, ephemeral[0])
    finally:
        journey.close()


@pytest.mark.parametrize("db_factory", ["sqlite"], indirect=True)
async def test_pxe_enlist_commission_deploy_release_a_real_vm(
    stack: Stack,  # noqa: F811 (fixture)
    veth: Veth,  # noqa: F811 (fixture)
    ephemeral: tuple[Path, Built],
    tmp_path: Path,
) -> None:
    need_root()
    await journey_on(Journey(stack, veth, tmp_path), ephemeral[0])


async def journey_on(journey: Journey, root: Path) -> None:
    """boot and the api set up for the VM's network, then the journey."""
    stack = journey.stack  # noqa: F811 (not the fixture)
    interface = journey.network()
    http_port = free_port(socket.SOCK_STREAM)
    await stack.serve_dhcp("10.213.7.0/24", SERVER_IP, "10.213.7.100", "10.213.7.150")
    await stack.start_boot(
        dhcp_interfaces=[interface],
        http_boot_address=SERVER_IP,
        http_boot_port=http_port,
        http_boot_url=f"http://{{server}}:{http_port}/boot",
        boot_resources_dir=root,
        enlist_cmdline=CMDLINE,
    )

    def api_port() -> int:
        assert stack.api is not None
        return stack.api.client.base_url.port or 80

    async with forwarder(SERVER_IP, api_port) as callback_port:
        await stack.start_api(
            boot_cmdline=CMDLINE, callback_url=f"http://{SERVER_IP}:{callback_port}"
        )
        await run_journey(journey, stack)
    total = sum(t for _, t in journey.times)
    print(f"journey: {total:.1f} s in stages")


async def run_journey(journey: Journey, stack: Stack) -> None:  # noqa: F811
    http = stack.http
    # Enlist: the unknown MAC PXE-boots (the enlistment config: the ephemeral environment
    # with no machine to report for, so it powers off); boot's event makes it New.
    await journey.power_on()

    async def enlisted() -> dict[str, Any] | None:
        machines = await ok(await http.get("/machines"))
        found = [m for m in machines if MAC in [i["mac"] for i in m["interfaces"]]]
        return found[0] if found else None

    machine = await journey.stage(
        "PXE boot to New", async_wait_for, enlisted, STAGE_DEADLINE_S, "enlisted"
    )
    journey.system_id = sid = machine["system_id"]
    assert machine["status"] == "new"
    await journey.powered_off()
    await ok(await http.patch(f"/machines/{sid}", json={"power": journey.power}))

    # Commission: the flow sets purpose commissioning with a token and "powers on".
    await ok(await http.post(f"/machines/{sid}/commission"), 202)
    await journey.stage(
        "commission to wait_callback", journey.status, "commissioning", flow_step="wait_callback"
    )
    if journey.by_hand:
        await journey.power_on()
    ready = await journey.stage("power on to Ready", journey.status, "ready")
    assert ready["cores"] == 2 and ready["memory"] == 512, ready
    assert ready["storage"] == 64 * 1024 * 1024, ready
    assert [i["mac"] for i in ready["interfaces"]] == [MAC], ready
    assert ready["architecture"] == "amd64/generic", ready
    await journey.powered_off()

    # Deploy: purpose deploy with a new token; the environment writes its marker.
    await ok(await http.post("/machines/allocate", json={"system_id": sid, "compose": False}))
    await ok(await http.post(f"/machines/{sid}/deploy", json={}), 202)
    await journey.stage(
        "deploy to wait_callback", journey.status, "deploying", flow_step="wait_callback"
    )
    if journey.by_hand:
        await journey.power_on()
    await journey.stage("power on to Deployed", journey.status, "deployed")
    assert marker(journey.disk) == f"metalbus-deployed system_id={sid}\n".encode()
    await journey.powered_off()
    await journey.stage("deployed to local boot", journey.status, "deployed", flow=None)
    assert (await stack.boot_config(MAC)).purpose == "local"

    await ok(await http.post(f"/machines/{sid}/release"), 202)
    await journey.stage("release to Ready", journey.status, "ready", flow=None)
    history = [
        (h["previous"], h["status"]) for h in await ok(await http.get(f"/machines/{sid}/history"))
    ]
    assert history == [
        ("new", "commissioning"), ("commissioning", "ready"), ("ready", "allocated"),
        ("allocated", "deploying"), ("deploying", "deployed"), ("deployed", "releasing"),
        ("releasing", "ready"),
    ]  # fmt: skip
