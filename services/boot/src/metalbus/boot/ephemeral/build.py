"""Build the ephemeral environment: Debian's kernel and an initramfs of busybox and /init.

Everything comes from installed Debian packages (``linux-image-amd64``,
``busybox-static``): the kernel is ``/boot/vmlinuz-<version>``, the NIC and disk drivers
(modules in Debian's kernel) are copied from ``/lib/modules/<version>`` with what they
depend on, in the order ``insmod`` needs them. The archive (cpio ``newc``, gzip) is written
here rather than by ``cpio``: entries sorted, times, owners and inode numbers fixed, so the
same inputs give the same bytes (and the same checksum).

Output, under ``<resources>/ephemeral/amd64/``: ``vmlinuz``, ``initrd.img`` and
``SHA256SUMS`` (``sha256sum -c`` reads it), and ``resources.json`` (kernel version, sizes
and sha256 of both files) -- the paths the api's ``EPHEMERAL_KERNEL``/``EPHEMERAL_INITRD``
and boot's ``ENLIST_KERNEL``/``ENLIST_INITRD`` name by default.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# Drivers of the NICs and disks QEMU/libvirt and common servers give a machine. Names as in
# modules.dep (without .ko); ones the kernel has built in, or lacks, are skipped.
MODULES = (
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    "e1000",
    "e1000e",
    "sd_mod",
    "ahci",
    "ata_piix",
)
BUSYBOX = Path("/bin/busybox")
SUBDIR = Path("ephemeral/amd64")


class BuildError(Exception):
    """What is missing to build the environment (a package not installed, a bad busybox)."""


@dataclass(frozen=True)
class Built:
    kernel: Path
    initrd: Path
    kernel_version: str
    sha256: dict[str, str]


def find_kernel(boot: Path = Path("/boot")) -> tuple[Path, str]:
    """The newest ``vmlinuz-<version>`` under /boot and its version."""
    kernels = sorted(boot.glob("vmlinuz-*"), key=lambda p: _version_key(p.name[8:]))
    if not kernels:
        raise BuildError(f"no kernel in {boot}: install linux-image-amd64")
    newest = kernels[-1]
    return newest, newest.name[len("vmlinuz-") :]


def _version_key(version: str) -> list[tuple[int, str]]:
    parts = version.replace("-", ".").split(".")
    return [(int(p), "") if p.isdigit() else (-1, p) for p in parts]


def module_order(modules_dir: Path, wanted: tuple[str, ...] = MODULES) -> list[str]:
    """Paths (relative to modules_dir) of the wanted modules and their dependencies,
    each after everything it depends on."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {Path(p).name.split(".ko")[0].replace("-", "_"): p for p in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in wanted:
        if name in by_name:
            visit(by_name[name])
    return order


class _Cpio:
    """A cpio ``newc`` archive written entry by entry (what the kernel unpacks)."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.ino = 0

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        self.ino += 1
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self.out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        self.out.write(encoded)
        self._pad()
        self.out.write(data)
        self._pad()

    def _pad(self) -> None:
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def _check_busybox(busybox: Path) -> bytes:
    try:
        data = busybox.read_bytes()
    except OSError as exc:
        raise BuildError(f"{busybox}: {exc.strerror}: install busybox-static") from exc
    # A dynamically linked busybox has a PT_INTERP program header (its loader); the
    # initramfs carries no libc, so it must be the static build. ELF64 little endian only.
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise BuildError(f"{busybox} is not a 64-bit ELF executable")
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    for i in range(phnum):
        at = phoff + i * phentsize
        if int.from_bytes(data[at : at + 4], "little") == 3:  # PT_INTERP
            raise BuildError(f"{busybox} is dynamically linked: install busybox-static")
    return data


def initramfs(busybox: Path, modules_dir: Path, module_paths: list[str]) -> bytes:
    """The gzipped cpio archive: busybox, /init, the udhcpc script and the modules."""
    here = resources.files(__package__)
    archive = _Cpio()
    for name in ("bin", "dev", "etc", "etc/metalbus", "lib", "lib/modules", "proc", "sys"):
        archive.directory(name)
    # The kernel opens /dev/console for init before anything is mounted.
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", _check_busybox(busybox), 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("init", here.joinpath("init.sh").read_bytes(), 0o755)
    archive.file("etc/metalbus/udhcpc.script", here.joinpath("udhcpc.script").read_bytes(), 0o755)
    archive.file(
        "etc/metalbus/modules", "".join(f"{Path(p).name}\n" for p in module_paths).encode()
    )
    for path in module_paths:
        archive.file(f"lib/modules/{Path(path).name}", (modules_dir / path).read_bytes())
    # mtime 0 and no file name in the gzip header: the same archive gives the same bytes.
    return gzip.compress(archive.finish(), compresslevel=9, mtime=0)


def build(
    resources_dir: Path,
    boot: Path = Path("/boot"),
    modules_root: Path = Path("/lib/modules"),
    busybox: Path = BUSYBOX,
) -> Built:
    """Build kernel and initrd into ``resources_dir/ephemeral/amd64`` with their checksums.

    Files are written beside their final names and renamed into place, so a boot service
    serving the directory never sends half a file.
    """
    kernel_src, version = find_kernel(boot)
    modules_dir = modules_root / version
    if not (modules_dir / "modules.dep").exists():
        raise BuildError(f"no {modules_dir}/modules.dep: install linux-image-{version}")
    paths = module_order(modules_dir)
    missing = [m for m in ("virtio_net", "virtio_pci") if not any(m in p for p in paths)]
    if missing:
        raise BuildError(f"modules {missing} not found in {modules_dir}")
    initrd = initramfs(busybox, modules_dir, paths)
    kernel = kernel_src.read_bytes()

    out = resources_dir / SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    files = {"vmlinuz": kernel, "initrd.img": initrd}
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    manifest = {
        "kernel_version": version,
        "kernel_package": f"linux-image-{version}",
        "modules": [Path(p).name for p in paths],
        "files": {
            name: {"path": str(SUBDIR / name), "size": len(data), "sha256": sums[name]}
            for name, data in files.items()
        },
    }
    files["SHA256SUMS"] = "".join(f"{sums[n]}  {n}\n" for n in sorted(sums)).encode()
    files["resources.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    for name, data in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, out / name)
    return Built(out / "vmlinuz", out / "initrd.img", version, sums)
