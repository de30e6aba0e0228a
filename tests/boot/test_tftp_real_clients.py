"""Real TFTP clients against metalbus's TFTP server on loopback: curl, atftp (with window
size), tftp-hpa and busybox tftp, each fetching a few-MB file and checking its bytes; the
per-machine virtual files; refusals (path traversal, symbolic links out, writes, netascii).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from pathlib import Path

import pytest

from tests.boot.conftest import Stack
from tests.boot.tftp_support import Tftp, completed, tftp  # noqa: F401 (the fixture)
from tests.conftest import skip_or_fail
from tests.helpers import async_wait_for

BIG = "images/big.bin"


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        skip_or_fail(f"{binary} is not installed (scripts/install-system-packages.sh)")
    assert path is not None
    return path


async def run(*argv: str, cwd: Path | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def clients(port: int, name: str, out: Path) -> dict[str, list[str]]:
    host = "127.0.0.1"
    url = f"tftp://{host}:{port}/{name}"
    return {
        "curl-512": [need("curl"), "-sS", "-o", str(out), url],
        "curl-1468": [need("curl"), "-sS", "-o", str(out), url, "--tftp-blksize", "1468"],
        "atftp-1468-w16": [
            need("atftp"), "--option", "blksize 1468", "--option", "windowsize 16",
            "--option", "tsize", "-g", "-r", name, "-l", str(out), host, str(port),
        ],
        "atftp-8192-w4": [
            need("atftp"), "--option", "blksize 8192", "--option", "windowsize 4",
            "--option", "timeout 2", "-g", "-r", name, "-l", str(out), host, str(port),
        ],
        "tftp-hpa": [need("tftp"), "-m", "binary", host, str(port), "-c", "get", name, str(out)],
        "busybox-512": [need("busybox"), "tftp", "-g", "-r", name, "-l", str(out), host, str(port)],
        "busybox-1468": [
            need("busybox"), "tftp", "-b", "1468", "-g", "-r", name, "-l", str(out),
            host, str(port),
        ],
    }  # fmt: skip


CLIENTS = list(clients(0, "", Path()).keys()) if shutil.which("curl") else []


@pytest.fixture
def big(tftp: Tftp) -> bytes:  # noqa: F811
    data = os.urandom(3 * 1024 * 1024 + 777)
    (tftp.root / "images").mkdir()
    (tftp.root / BIG).write_bytes(data)
    return data


@pytest.mark.parametrize(
    "client",
    ["curl-512", "curl-1468", "atftp-1468-w16", "atftp-8192-w4", "tftp-hpa", "busybox-512",
     "busybox-1468"],
)  # fmt: skip
async def test_a_real_client_fetches_a_large_file(
    tftp: Tftp,  # noqa: F811
    big: bytes,
    tmp_path: Path,
    client: str,
) -> None:
    out = tmp_path / "out.bin"
    code, output = await run(*clients(tftp.port, BIG, out)[client])
    assert code == 0, output
    assert out.read_bytes() == big
    await completed(tftp, 1)
    assert tftp.metric("metalbus_tftp_active_transfers") == 0


async def test_many_clients_at_once(tftp: Tftp, big: bytes, tmp_path: Path) -> None:  # noqa: F811
    outs = [tmp_path / f"out{i}" for i in range(8)]
    runs = [
        run(*clients(tftp.port, BIG, out)["atftp-1468-w16" if i % 2 else "curl-1468"])
        for i, out in enumerate(outs)
    ]
    results = await asyncio.gather(*runs)
    assert all(code == 0 for code, _ in results), results
    assert all(out.read_bytes() == big for out in outs)
    await completed(tftp, 8)


async def test_virtual_files_are_rendered_per_machine(tftp: Tftp, tmp_path: Path) -> None:  # noqa: F811
    from metalbus.boot.configs.render import BootConfig

    tftp.memory.by_mac["52:54:00:12:34:56"] = BootConfig("local")
    out = tmp_path / "cfg"

    async def fetch(name: str) -> str:
        code, output = await run(
            need("curl"), "-sS", "-o", str(out), f"tftp://127.0.0.1:{tftp.port}/{name}"
        )
        assert code == 0, output
        return out.read_text()

    assert "LOCALBOOT 0" in await fetch("pxelinux.cfg/01-52-54-00-12-34-56")
    unknown = await fetch("pxelinux.cfg/01-52-54-00-aa-bb-cc")
    assert "KERNEL ephemeral/vmlinuz" in unknown
    assert "metalbus.purpose=enlist BOOTIF=01-52-54-00-aa-bb-cc" in unknown
    assert "metalbus.purpose=enlist" in await fetch("pxelinux.cfg/default")
    assert "exit" in await fetch("grub/grub.cfg-52:54:00:12:34:56")
    assert "linux /ephemeral/vmlinuz" in await fetch("grub/grub.cfg")
    code, output = await run(
        need("curl"), "-sS", "-o", str(out), f"tftp://127.0.0.1:{tftp.port}/pxelinux.cfg/C0A8"
    )
    assert code == 68, output  # curl's "file not found on the TFTP server"


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "images/../../etc/passwd", "//etc/passwd", "escape/passwd", "outside"]
)
async def test_no_file_outside_the_root_is_served(tftp: Tftp, tmp_path: Path, name: str) -> None:  # noqa: F811
    (tftp.root / "escape").symlink_to("/etc")
    (tftp.root / "outside").symlink_to("/etc/passwd")
    out = tmp_path / "out"
    code, output = await run(
        need("curl"), "-sS", "-o", str(out), f"tftp://127.0.0.1:{tftp.port}/{name}"
    )
    assert code != 0, output
    assert not out.exists() or b"root:" not in out.read_bytes()
    assert tftp.metric("metalbus_tftp_transfers_total", outcome="refused") == 1


async def test_a_symbolic_link_inside_the_root_is_followed(tftp: Tftp, tmp_path: Path) -> None:  # noqa: F811
    (tftp.root / "real.bin").write_bytes(b"x" * 1000)
    (tftp.root / "alias.bin").symlink_to("real.bin")
    out = tmp_path / "out"
    code, output = await run(
        need("curl"), "-sS", "-o", str(out), f"tftp://127.0.0.1:{tftp.port}/alias.bin"
    )
    assert code == 0, output
    assert out.read_bytes() == b"x" * 1000


async def test_writes_and_netascii_are_refused(tftp: Tftp, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "upload").write_bytes(b"hello")
    _, output = await run(
        need("tftp"), "-m", "binary", "127.0.0.1", str(tftp.port), "-c", "put", "upload", "upload",
        cwd=tmp_path,
    )  # fmt: skip
    assert "writes are not accepted" in output, output
    assert not (tftp.root / "upload").exists()
    (tftp.root / "text").write_bytes(b"a\nb\n")
    _, output = await run(
        need("tftp"), "-m", "netascii", "127.0.0.1", str(tftp.port), "-c", "get", "text",
        str(tmp_path / "text"),
    )  # fmt: skip
    assert "only octet mode" in output, output
    assert tftp.metric("metalbus_tftp_requests_total", kind="wrq") == 1
    assert tftp.metric("metalbus_tftp_transfers_total", outcome="refused") == 2


async def test_the_boot_service_serves_tftp_from_its_settings(stack: Stack, tmp_path: Path) -> None:
    root = tmp_path / "resources"
    (root / "ephemeral").mkdir(parents=True)
    (root / "lpxelinux.0").write_bytes(b"\x90" * 40_000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await stack.start_boot(
        tftp_address="127.0.0.1",
        tftp_port=port,
        boot_resources_dir=root,
        enlist_kernel="ephemeral/vmlinuz-6.1",
    )
    out = tmp_path / "out"
    code, output = await run(
        need("curl"), "-sS", "-o", str(out), f"tftp://127.0.0.1:{port}/lpxelinux.0"
    )
    assert code == 0, output
    assert out.read_bytes() == b"\x90" * 40_000
    code, output = await run(
        need("curl"), "-sS", "-o", str(out), f"tftp://127.0.0.1:{port}/pxelinux.cfg/default"
    )
    assert code == 0, output
    assert "KERNEL ephemeral/vmlinuz-6.1" in out.read_text()
    await async_wait_for(
        lambda: stack.metric("metalbus_tftp_transfers_total", outcome="completed") == 2,
        5,
        "2 completed transfers",
    )
    await stack.stop_boot()
    code, _ = await run(
        need("curl"),
        "-sS",
        "--max-time",
        "2",
        "-o",
        str(out),
        f"tftp://127.0.0.1:{port}/lpxelinux.0",
    )
    assert code != 0  # the socket went with the service
