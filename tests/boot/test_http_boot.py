"""HTTP boot: the iPXE scripts per MAC and the boot files, with Range, fetched by curl (and
httpx for headers); the boot service serving it from its settings."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import httpx
import pytest

from metalbus.boot.configs.provider import BootConfigs, MemoryConfigs
from metalbus.boot.configs.render import BootConfig
from metalbus.boot.http.app import boot_app
from metalbus.shared.contract.boot import (
    BOOT_CONFIG_CLEAR,
    BOOT_CONFIG_GET,
    BOOT_CONFIG_SET,
    BootConfigSet,
)
from metalbus.shared.errors import MetalbusError
from tests.boot.conftest import Stack
from tests.boot.test_tftp_real_clients import need, run
from tests.helpers import InLoopServer, async_wait_for


def configs(memory: MemoryConfigs) -> BootConfigs:
    return BootConfigs(
        BootConfig("enlist", "ephemeral/vmlinuz", "ephemeral/initrd", "quiet"), memory
    )


async def test_ipxe_scripts_and_files_with_range(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "ephemeral").mkdir(parents=True)
    initrd = os.urandom(2 * 1024 * 1024 + 3)
    (root / "ephemeral" / "initrd").write_bytes(initrd)
    (root / "escape").symlink_to("/etc")
    memory = MemoryConfigs()
    boot = configs(memory)
    deploy = BootConfig("deploy", "deploy/vmlinuz", "deploy/initrd", "ro")
    memory.by_mac["52:54:00:12:34:56"] = deploy
    async with InLoopServer(boot_app(root, boot)) as url:
        out = tmp_path / "out"
        code, output = await run(need("curl"), "-sSf", "-o", str(out), f"{url}/boot/ipxe.cfg")
        assert code == 0, output
        assert out.read_text() == (
            "#!ipxe\nchain ipxe.cfg-${uuid} || chain ipxe.cfg-${mac:hexhyp}\n"
        )
        code, output = await run(
            need("curl"), "-sSf", "-o", str(out), f"{url}/boot/ipxe.cfg-52-54-00-12-34-56"
        )
        assert code == 0, output
        script = out.read_text()
        assert script.startswith("#!ipxe\n")
        assert (
            f"kernel {url}/boot/deploy/vmlinuz initrd=initrd ro metalbus.purpose=deploy" in script
        )
        assert f"initrd --name initrd {url}/boot/deploy/initrd" in script
        code, _ = await run(
            need("curl"), "-sSf", "-o", str(out), f"{url}/boot/ipxe.cfg-52-54-00-aa-bb-cc"
        )
        assert "metalbus.purpose=enlist BOOTIF=01-52-54-00-aa-bb-cc" in out.read_text()
        # A whole file, then a range of it (a resumed download).
        code, output = await run(
            need("curl"), "-sSf", "-o", str(out), f"{url}/boot/ephemeral/initrd"
        )
        assert code == 0, output
        assert out.read_bytes() == initrd
        code, output = await run(
            need("curl"), "-sSf", "-r", "1000-1999", "-o", str(out), f"{url}/boot/ephemeral/initrd"
        )
        assert code == 0, output
        assert out.read_bytes() == initrd[1000:2000]
        async with httpx.AsyncClient(base_url=url) as client:
            partial = await client.get("/boot/ephemeral/initrd", headers={"Range": "bytes=-10"})
            assert partial.status_code == 206 and partial.content == initrd[-10:]
            head = await client.head("/boot/ephemeral/initrd")
            assert head.status_code == 200
            assert head.headers["content-length"] == str(len(initrd))
            assert head.headers["accept-ranges"] == "bytes"
            grub = await client.get("/boot/grub/grub.cfg-52:54:00:12:34:56")
            assert "linux /deploy/vmlinuz ro metalbus.purpose=deploy" in grub.text
            assert (await client.get("/boot/missing")).status_code == 404
            assert (await client.get("/boot/escape/passwd")).status_code == 403
            assert (await client.get("/boot/ephemeral")).status_code == 404  # a folder
            assert (await client.get("/boot/%2E%2E/etc/passwd")).status_code in (403, 404)


async def test_the_boot_service_serves_http_boot_from_its_settings(
    stack: Stack, tmp_path: Path
) -> None:
    root = tmp_path / "resources"
    root.mkdir()
    (root / "bootx64.efi").write_bytes(b"MZ" + b"\x00" * 5000)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await stack.start_boot(
        http_boot_address="127.0.0.1", http_boot_port=port, boot_resources_dir=root
    )
    url = f"http://127.0.0.1:{port}"
    out = tmp_path / "out"

    async def listening() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    await async_wait_for(listening, 10, "HTTP boot to listen")
    code, output = await run(need("curl"), "-sSf", "-o", str(out), f"{url}/boot/bootx64.efi")
    assert code == 0, output
    assert out.read_bytes() == b"MZ" + b"\x00" * 5000
    code, output = await run(
        need("curl"), "-sSf", "-o", str(out), f"{url}/boot/ipxe.cfg-52-54-00-00-00-01"
    )
    assert code == 0, output
    assert "kernel " in out.read_text()
    await stack.stop_boot()
    code, _ = await run(need("curl"), "-sS", "--max-time", "2", f"{url}/boot/bootx64.efi")
    assert code != 0  # the server went with the service


async def test_boot_configs_set_over_the_bus_reach_tftp_and_http(
    stack: Stack, tmp_path: Path
) -> None:
    root = tmp_path / "resources"
    root.mkdir()
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        udp.bind(("127.0.0.1", 0))
        http_port, tftp_port = tcp.getsockname()[1], udp.getsockname()[1]
    await stack.start_boot(
        http_boot_address="127.0.0.1",
        http_boot_port=http_port,
        tftp_address="127.0.0.1",
        tftp_port=tftp_port,
        boot_resources_dir=root,
    )
    mac = "52:54:00:AB:CD:EF"
    default = await stack.call(BOOT_CONFIG_GET, mac=mac)
    assert default.is_default and default.purpose == "enlist" and default.mac == mac.lower()
    with pytest.raises(ValueError):  # checked by the caller's model...
        BootConfigSet(mac=mac, purpose="deploy")
    unchecked = BootConfigSet.model_construct(
        mac=mac, purpose="deploy", kernel="", initrd="", cmdline=""
    )
    with pytest.raises(MetalbusError):  # ... and by the service's
        await stack.bus.request(BOOT_CONFIG_SET, unchecked)
    info = await stack.call(
        BOOT_CONFIG_SET,
        mac=mac,
        purpose="commissioning",
        kernel="ephemeral/jammy/vmlinuz",
        initrd="ephemeral/jammy/initrd",
        cmdline="console=ttyS0",
    )
    assert not info.is_default and info.purpose == "commissioning"
    out = tmp_path / "out"
    tftp_url = f"tftp://127.0.0.1:{tftp_port}/pxelinux.cfg/01-52-54-00-ab-cd-ef"
    code, output = await run(need("curl"), "-sS", "-o", str(out), tftp_url)
    assert code == 0, output
    assert "KERNEL ephemeral/jammy/vmlinuz" in out.read_text()
    assert "console=ttyS0 metalbus.purpose=commissioning" in out.read_text()
    await stack.call(BOOT_CONFIG_SET, mac=mac, purpose="local")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client:

        async def script() -> str:
            try:
                return (await client.get("/boot/ipxe.cfg-52-54-00-ab-cd-ef")).text
            except httpx.TransportError:
                return ""  # not listening yet

        assert await async_wait_for(script, 10, "HTTP boot") == "#!ipxe\nexit\n"
        grub = await client.get("/boot/grub/grub.cfg-52:54:00:ab:cd:ef")
        assert "exit" in grub.text
        cleared = await stack.call(BOOT_CONFIG_CLEAR, mac=mac)
        assert cleared.is_default
        assert "metalbus.purpose=enlist" in (await script())
