"""The ephemeral environment, built from this machine's Debian packages, boots in QEMU (TCG)
from its kernel and initrd, gets a lease from QEMU's user network, gathers the VM's real
hardware and posts it, with the token from its kernel command line, to a callback receiver
that checks the body with the api's own request models; with purpose deploy it writes its
marker to the first disk and posts the result. The VM reaches nothing but the receiver on
loopback (``restrict=on``, one ``guestfwd``).
"""

from __future__ import annotations

import gzip
import hashlib
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from metalbus.api.machines.shapes import CommissioningReport, DeployReport
from metalbus.boot.ephemeral.build import SUBDIR, Built, build
from tests.e2e.vm import Vm, kernel_and_initrd, marker
from tests.helpers import InLoopServer

MAC = "52:54:00:12:34:56"
TOKEN = "t0ken-for-this-boot-only"
SYSTEM_ID = "abc123"
BOOT_DEADLINE_S = 90.0


class Receiver:
    """The api's two callback routes, played: bodies checked by the api's models."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, Any]] = []

    async def commissioning(self, request: Request) -> JSONResponse:
        body = CommissioningReport.model_validate_json(await request.body())
        self.posts.append((request.url.path, request.headers["authorization"], body))
        return JSONResponse({"status": "ready"})

    async def result(self, request: Request) -> JSONResponse:
        body = DeployReport.model_validate_json(await request.body())
        self.posts.append((request.url.path, request.headers["authorization"], body))
        return JSONResponse({"status": "deployed"})

    def app(self) -> Starlette:
        base = "/api/v1/machines/{system_id}/callback"
        return Starlette(
            routes=[
                Route(f"{base}/commissioning", self.commissioning, methods=["POST"]),
                Route(f"{base}/result", self.result, methods=["POST"]),
            ]
        )


async def boot(root: Path, tmp_path: Path, purpose: str, disk: Path) -> tuple[Vm, Receiver]:
    receiver = Receiver()
    async with InLoopServer(receiver.app()) as base:
        port = base.rsplit(":", 1)[1]
        kernel, initrd = kernel_and_initrd(root)
        vm = Vm(tmp_path / f"console-{purpose}.log", disk)
        cmdline = (
            "console=ttyS0 panic=-1 quiet metalbus.url=http://10.0.2.100:8080 "
            f"metalbus.system_id={SYSTEM_ID} metalbus.purpose={purpose} metalbus.token={TOKEN}"
        )
        await vm.start(
            "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
            "-netdev", f"user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:8080-tcp:127.0.0.1:{port}",
            "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
        )  # fmt: skip
        try:
            await vm.wait_exit(BOOT_DEADLINE_S)
        finally:
            await vm.stop()
    print(f"{purpose}: QEMU start to power-off {time.monotonic() - vm.started:.1f} s")
    return vm, receiver


async def test_commissioning_reports_the_real_hardware(
    ephemeral: tuple[Path, Built],
    tmp_path: Path,
) -> None:
    root, _ = ephemeral
    vm, receiver = await boot(root, tmp_path, "commissioning", Vm.make_disk(tmp_path / "d.img"))
    assert len(receiver.posts) == 1, vm.text()
    path, auth, report = receiver.posts[0]
    assert path == f"/api/v1/machines/{SYSTEM_ID}/callback/commissioning"
    assert auth == f"Bearer {TOKEN}"
    assert report.cores == 2 and report.memory == 512
    assert report.architecture == "amd64/generic"
    [disk] = report.disks
    assert (disk.name, disk.size, disk.serial) == ("vda", 64 * 1024 * 1024, "MB-DISK-0001")
    assert [(n.name, str(n.mac)) for n in report.interfaces] == [("eth0", MAC)]
    # What the api's model does not take yet: on the console.
    hardware = vm.hardware()
    assert hardware["boot_mode"] == "bios"
    assert hardware["dmi"]["sys_vendor"] == "QEMU"  # type: ignore[index]
    assert hardware["nics"] == [{"name": "eth0", "mac": MAC, "link": "up"}]
    assert "metalbus: leased 10.0.2.15/24 on eth0" in vm.text()


async def test_deploy_writes_the_marker_and_reports_success(
    ephemeral: tuple[Path, Built],
    tmp_path: Path,
) -> None:
    root, _ = ephemeral
    disk = Vm.make_disk(tmp_path / "d.img")
    vm, receiver = await boot(root, tmp_path, "deploy", disk)
    assert marker(disk) == f"metalbus-deployed system_id={SYSTEM_ID}\n".encode(), vm.text()
    [(path, auth, result)] = receiver.posts
    assert path == f"/api/v1/machines/{SYSTEM_ID}/callback/result"
    assert auth == f"Bearer {TOKEN}"
    assert result.result == "success" and "vda" in result.message


def test_the_build_is_reproducible_and_checksummed(
    ephemeral: tuple[Path, Built],
    tmp_path: Path,
) -> None:
    root, built = ephemeral
    again = build(tmp_path)
    assert again.sha256 == built.sha256
    sums = (root / SUBDIR / "SHA256SUMS").read_text().splitlines()
    for line in sums:
        digest, name = line.split("  ")
        assert hashlib.sha256((root / SUBDIR / name).read_bytes()).hexdigest() == digest
    # The archive has what /init needs: busybox, the script, the NIC modules.
    archive = gzip.decompress((root / SUBDIR / "initrd.img").read_bytes())
    for name in (b"bin/busybox", b"init", b"etc/metalbus/modules", b"virtio_net.ko"):
        assert name in archive
