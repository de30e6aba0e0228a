"""A real libvirtd (``qemu:///system``) for the tests, and a host set up on it.

:class:`Libvirtd` uses the libvirtd that answers on ``qemu:///system``, or (as root) starts
one: libvirtd itself inside a network namespace it creates (so the bridge, the VMs' taps and
any firewall rules libvirt makes stay in there), and virtlogd (the serial console logs go
through it) when none runs. ``stop()`` stops what it started, and only that. The qemu
driver's own set-up (the ``libvirt-qemu`` user, guests run as root in
``/etc/libvirt/qemu.conf``) is ``scripts/install-system-packages.sh``'s: a test does not
rewrite system files.

:class:`QemuHost` makes, per test, a ``dir`` storage pool in a temporary folder, a bridge
(in libvirtd's namespace) and a transient libvirt network ``maas`` bridged to it (no DHCP,
no addresses: libvirt starts no dnsmasq and writes no firewall rule for it); ``close()``
removes the VMs whose names carry the test's prefix, the pool with its volumes, the network
and the bridge, each even when another fails.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from tests.conftest import skip_or_fail
from tests.helpers import wait_for

URI = "qemu:///system"
RUN_DIR = Path("/run/libvirt")
VIRTLOGD_SOCKET = RUN_DIR / "virtlogd-sock"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 30.0


def _quiet(_: object, __: object) -> None:
    """libvirt prints every error to stderr unless a handler takes it."""


libvirt.registerErrorHandler(_quiet, None)


def virsh_answers() -> bool:
    """``virsh -c qemu:///system version`` succeeds."""
    if shutil.which("virsh") is None:
        return False
    try:
        done = subprocess.run(
            ["virsh", "-c", URI, "version"], capture_output=True, timeout=10, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _qemu_runs_as_root() -> bool:
    try:
        text = Path("/etc/libvirt/qemu.conf").read_text()
    except OSError:
        return False
    return re.search(r'^\s*user\s*=\s*"(root|\+0)"', text, re.MULTILINE) is not None


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class Libvirtd:
    """The libvirtd on ``qemu:///system``: the one that answers, or one started here."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.netns: str | None = None
        self.started: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self) -> None:
        """Make ``qemu:///system`` answer; skip (fail in CI) when it cannot."""
        if virsh_answers():
            return
        if os.geteuid() != 0:
            skip_or_fail(f"no libvirtd answers on {URI} and only root can start one")
        missing = [p for p in ("libvirtd", "virtlogd", "virsh", "ip") if shutil.which(p) is None]
        if shutil.which("qemu-system-x86_64") is None:
            missing.append("qemu-system-x86_64")
        if missing:
            skip_or_fail(
                f"no libvirtd answers on {URI} and {', '.join(missing)} not installed "
                "(scripts/install-system-packages.sh installs them)"
            )
        try:
            pwd.getpwnam("libvirt-qemu")
        except KeyError:
            skip_or_fail(
                "libvirtd's qemu driver needs the libvirt-qemu user "
                "(scripts/install-system-packages.sh makes it)"
            )
        if not _qemu_runs_as_root():
            skip_or_fail(
                '/etc/libvirt/qemu.conf does not say user = "root" for guests '
                "(scripts/install-system-packages.sh does)"
            )
        for folder in (RUN_DIR, Path("/var/log/libvirt/qemu"), Path("/var/lib/libvirt")):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            if not _socket_answers(VIRTLOGD_SOCKET):
                self._spawn("virtlogd", ["virtlogd"])
                wait_for(
                    lambda: self._alive("virtlogd") and _socket_answers(VIRTLOGD_SOCKET),
                    START_DEADLINE_S,
                    f"virtlogd to listen on {VIRTLOGD_SOCKET}",
                )
            self.netns = f"metalbus-compose-{os.getpid()}-{secrets.token_hex(2)}"
            subprocess.run(["ip", "netns", "add", self.netns], check=True)
            subprocess.run(
                ["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"], check=True
            )
            self._spawn("libvirtd", ["ip", "netns", "exec", self.netns, "libvirtd"])
            wait_for(
                lambda: self._alive("libvirtd") and virsh_answers(),
                START_DEADLINE_S,
                f"`virsh -c {URI} version` to answer",
            )
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started.append((name, process, log))

    def _alive(self, name: str) -> bool:
        for found, process, log in self.started:
            if found == name and process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{_tail(log)}")
        return True

    def bridge_command(self, *argv: str) -> list[str]:
        """``argv`` run in libvirtd's network namespace."""
        if self.netns is None:
            return list(argv)
        return ["ip", "netns", "exec", self.netns, *argv]

    def stop(self) -> None:
        """Stop what ``start`` started (libvirtd, then virtlogd) and delete its namespace."""
        while self.started:
            _, process, _ = self.started.pop()
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_DEADLINE_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_DEADLINE_S)
        if self.netns is not None:
            subprocess.run(["ip", "netns", "del", self.netns], check=False)
            self.netns = None


@dataclass
class Seen:
    """A domain as libvirt itself reports it."""

    active: bool
    state: int
    type: str
    vcpus: int
    memory_kib: int
    cpu_time_ns: int
    autostart: bool
    disks: list[tuple[str, str]]
    networks: list[str]


class QemuHost:
    """A storage pool, a bridge and a ``maas`` network on the real libvirtd, for one test."""

    NETWORK = "maas"

    def __init__(self, daemon: Libvirtd, workdir: Path) -> None:
        tag = secrets.token_hex(3)
        self.daemon = daemon
        self.uri = URI
        self.prefix = f"mbtest-{tag}-"
        self.pool = f"mbtest-{tag}"
        self.pool_dir = workdir / "pool"
        self.serial_dir = workdir / "serial"
        self.bridge = f"mbbr{tag}"
        self.conn: Any = None
        self._undo = contextlib.ExitStack()

    def open(self) -> None:
        """Make the pool, bridge and network (what is made is undone by ``close``)."""
        self.conn = libvirt.open(self.uri)
        self._undo.callback(self.conn.close)
        if self.NETWORK in [n.name() for n in self.conn.listAllNetworks(0)]:
            skip_or_fail(
                f"{self.uri} already has a network named {self.NETWORK}; the test leaves it alone"
            )
        self.pool_dir.mkdir()
        self.serial_dir.mkdir()
        pool = ET.Element("pool", type="dir")
        ET.SubElement(pool, "name").text = self.pool
        ET.SubElement(ET.SubElement(pool, "target"), "path").text = str(self.pool_dir)
        made = self.conn.storagePoolCreateXML(ET.tostring(pool, encoding="unicode"), 0)
        self._undo.callback(self._remove_pool, made)
        subprocess.run(
            self.daemon.bridge_command("ip", "link", "add", self.bridge, "type", "bridge"),
            check=True,
        )
        self._undo.callback(
            subprocess.run,
            self.daemon.bridge_command("ip", "link", "del", self.bridge),
            check=False,
        )
        subprocess.run(
            self.daemon.bridge_command("ip", "link", "set", self.bridge, "up"), check=True
        )
        net = ET.Element("network")
        ET.SubElement(net, "name").text = self.NETWORK
        ET.SubElement(net, "forward", mode="bridge")
        ET.SubElement(net, "bridge", name=self.bridge)
        network = self.conn.networkCreateXML(ET.tostring(net, encoding="unicode"))
        self._undo.callback(network.destroy)
        # Runs first: the VMs go before the pool and network they use.
        self._undo.callback(self._remove_domains)

    def _remove_domains(self) -> None:
        for dom in self.conn.listAllDomains(0):
            if not dom.name().startswith(self.prefix):
                continue
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        # libvirt's own log of each of the test's VMs (QEMU's command line and stderr).
        for log in Path("/var/log/libvirt/qemu").glob(f"{self.prefix}*.log"):
            log.unlink(missing_ok=True)

    @staticmethod
    def _remove_pool(pool: Any) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            with contextlib.suppress(libvirt.libvirtError):
                vol.delete(0)
        pool.destroy()

    def close(self) -> None:
        """Undo everything ``open`` made, in reverse; every step runs."""
        self._undo.close()

    # -- what libvirt itself says (blocking: tests call these in a thread) -------------------

    def domain(self, uuid: str) -> Seen | None:
        try:
            dom = self.conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        root = ET.fromstring(dom.XMLDesc(0))
        state, memory_kib, _, vcpus, cpu_time_ns = dom.info()
        return Seen(
            active=bool(dom.isActive()),
            state=state,
            type=root.get("type", ""),
            vcpus=vcpus,
            memory_kib=memory_kib,
            cpu_time_ns=cpu_time_ns,
            autostart=bool(dom.autostart()),
            disks=[
                (s.get("pool", ""), s.get("volume", ""))
                for s in root.iterfind("devices/disk/source")
            ],
            networks=[s.get("network", "") for s in root.iterfind("devices/interface/source")],
        )

    def volumes(self) -> dict[str, int]:
        """The pool's volumes and their capacities, as libvirt finds them on disk."""
        pool = self.conn.storagePoolLookupByName(self.pool)
        pool.refresh(0)
        return {vol.name(): vol.info()[1] for vol in pool.listAllVolumes(0)}

    def domain_types(self, arch: str) -> list[str]:
        """The domain types libvirt's capabilities offer for hvm guests of ``arch``."""
        caps = ET.fromstring(self.conn.getCapabilities())
        return [
            d.get("type", "")
            for guest in caps.iterfind("guest")
            if guest.findtext("os_type") == "hvm"
            for d in guest.iterfind(f"arch[@name='{arch}']/domain")
        ]
