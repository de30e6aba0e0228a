"""Purposes poweroff and rescue, and configs addressed by machine UUID: set over the bus,
fetched as pxelinux's ``pxelinux.cfg/<uuid>`` and GRUB's ``grub/grub.cfg-<uuid>`` by curl
over TFTP, and as iPXE's ``ipxe.cfg-<uuid>`` over HTTP; a UUID nobody set is not found (the
loader moves on to its MAC name); a UUID is one machine's only; bad input is refused.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from metalbus.boot.configs.render import BootConfig, grub, ipxe, pxelinux
from metalbus.shared.contract.boot import BOOT_CONFIG_GET, BOOT_CONFIG_SET, BootConfigSet
from metalbus.shared.errors import Conflict, MetalbusError
from tests.boot.conftest import Stack
from tests.boot.test_tftp_real_clients import need, run
from tests.helpers import async_wait_for

MAC = "52:54:00:0f:0e:0d"
OTHER_MAC = "52:54:00:0f:0e:0e"
CURL_TFTP_NOT_FOUND = 68  # curl's exit code for a TFTP ERROR 1
MACHINE_UUID = "B8945908-D6A6-41A9-611D-74A6AB80B83D"  # firmware may send upper case


def test_poweroff_and_rescue_renderings() -> None:
    off = BootConfig("poweroff")
    assert (
        pxelinux(off, MAC) == b"DEFAULT poweroff\nPROMPT 0\nLABEL poweroff\n  COM32 poweroff.c32\n"
    )
    assert "menuentry 'poweroff' {\n  halt\n}" in grub(off, MAC).decode()
    assert ipxe(off, MAC, "http://x/boot") == b"#!ipxe\npoweroff\n"
    rescue = BootConfig("rescue", "eph/vmlinuz", "eph/initrd", "console=ttyS0")
    assert b"APPEND console=ttyS0 metalbus.purpose=rescue BOOTIF=01-52-54-00-0f-0e-0d" in (
        pxelinux(rescue, MAC)
    )
    assert b"linux /eph/vmlinuz console=ttyS0 metalbus.purpose=rescue" in grub(rescue, MAC)
    assert b"kernel http://x/boot/eph/vmlinuz initrd=initrd" in ipxe(rescue, MAC, "http://x/boot")


def test_bad_purposes_and_uuids_are_refused_by_the_model() -> None:
    with pytest.raises(ValueError, match="rescue needs a kernel and an initrd"):
        BootConfigSet(mac=MAC, purpose="rescue")
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000", "f" * 32):
        with pytest.raises(ValueError, match="uuid"):
            BootConfigSet(mac=MAC, purpose="poweroff", uuid=bad)
    assert BootConfigSet(mac=MAC, purpose="poweroff").kernel == ""


async def test_configs_by_uuid_over_tftp_and_http(stack: Stack, tmp_path: Path) -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        udp.bind(("127.0.0.1", 0))
        http_port, tftp_port = tcp.getsockname()[1], udp.getsockname()[1]
    root = tmp_path / "resources"
    root.mkdir()
    await stack.start_boot(
        http_boot_address="127.0.0.1",
        http_boot_port=http_port,
        tftp_address="127.0.0.1",
        tftp_port=tftp_port,
        boot_resources_dir=root,
    )
    uuid = MACHINE_UUID.lower()
    info = await stack.call(
        BOOT_CONFIG_SET,
        mac=MAC,
        purpose="rescue",
        kernel="eph/vmlinuz",
        initrd="eph/initrd",
        uuid=MACHINE_UUID,
    )
    assert info.uuid == uuid and info.purpose == "rescue" and not info.is_default
    assert (await stack.call(BOOT_CONFIG_GET, mac=MAC)).uuid == uuid

    async def tftp(name: str) -> tuple[int, str]:
        out = tmp_path / "out"
        out.unlink(missing_ok=True)
        code, output = await run(
            need("curl"), "-sS", "-o", str(out), f"tftp://127.0.0.1:{tftp_port}/{name}"
        )
        return code, out.read_text() if code == 0 else output

    code, text = await tftp(f"pxelinux.cfg/{uuid}")
    assert code == 0, text
    assert (
        "KERNEL eph/vmlinuz" in text
        and "metalbus.purpose=rescue BOOTIF=01-52-54-00-0f-0e-0d" in text
    )
    code, text = await tftp(f"grub/grub.cfg-{uuid}")
    assert code == 0 and "linux /eph/vmlinuz metalbus.purpose=rescue" in text, text
    code, text = await tftp("pxelinux.cfg/11111111-2222-3333-4444-555555555555")
    assert code == CURL_TFTP_NOT_FOUND, text  # pxelinux tries its MAC name next

    # poweroff, same machine: by UUID and by MAC
    await stack.call(BOOT_CONFIG_SET, mac=MAC, purpose="poweroff", uuid=uuid)
    code, text = await tftp(f"pxelinux.cfg/{uuid}")
    assert code == 0 and "COM32 poweroff.c32" in text, text
    code, text = await tftp("pxelinux.cfg/01-52-54-00-0f-0e-0d")
    assert code == 0 and "COM32 poweroff.c32" in text, text
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client:

        async def script(name: str) -> httpx.Response | None:
            try:
                return await client.get(f"/boot/{name}")
            except httpx.TransportError:
                return None  # not listening yet

        by_uuid = await async_wait_for(lambda: script(f"ipxe.cfg-{uuid}"), 10, "HTTP boot")
        assert by_uuid.status_code == 200 and by_uuid.text == "#!ipxe\npoweroff\n"
        unknown = await client.get("/boot/ipxe.cfg-11111111-2222-3333-4444-555555555555")
        assert unknown.status_code == 404

    # one machine's UUID only; the first keeps it
    with pytest.raises(Conflict) as taken:
        await stack.call(BOOT_CONFIG_SET, mac=OTHER_MAC, purpose="local", uuid=uuid)
    assert taken.value.field == "uuid"
    assert (await stack.call(BOOT_CONFIG_GET, mac=OTHER_MAC)).is_default
    # a bad UUID that skipped the caller's model is refused by the service
    unchecked = BootConfigSet.model_construct(
        mac=OTHER_MAC, purpose="local", kernel="", initrd="", cmdline="", uuid="nonsense"
    )
    with pytest.raises(MetalbusError):
        await stack.bus.request(BOOT_CONFIG_SET, unchecked)
    # set again without a UUID: the name is gone
    await stack.call(BOOT_CONFIG_SET, mac=MAC, purpose="local")
    code, text = await tftp(f"pxelinux.cfg/{uuid}")
    assert code == CURL_TFTP_NOT_FOUND, text
