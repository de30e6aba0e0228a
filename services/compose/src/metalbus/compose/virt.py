"""libvirt, blocking, behind one small interface: discover a host, make and unmake VMs.

libvirt-python blocks, so every call runs in the service's libvirt thread pool
(:meth:`Libvirt.run`), never on the event loop. Connections are kept per host (URI and
credentials) and reused: libvirt connections are thread-safe, and the test driver's
``test:///<file>.xml`` state lives only as long as its connection. A connection that fails
is dropped and opened again on the next call.

Credentials: a password answers libvirt's authentication callback; an SSH key is written
to a private file (mode 0600) that the URI names with ``keyfile=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import os
import tempfile
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import libvirt

from metalbus.shared.contract.compose import (
    HostInterface,
    HostInterfaceType,
    InterfaceLink,
    LibvirtNetwork,
    StoragePool,
    VmPowerState,
)
from metalbus.shared.errors import Conflict, ServiceUnavailable, ValidationFailed

T = TypeVar("T")
MIB = 1024 * 1024
_ARCHES = {
    "x86_64": "amd64/generic",
    "amd64": "amd64/generic",
    "i686": "i386/generic",
    "i386": "i386/generic",
    "aarch64": "arm64/generic",
    "armv7l": "armhf/generic",
    "ppc64le": "ppc64el/generic",
    "s390x": "s390x/generic",
}
_LIBVIRT_ARCH = {
    "amd64": "x86_64",
    "i386": "i686",
    "arm64": "aarch64",
    "armhf": "armv7l",
    "ppc64el": "ppc64le",
    "s390x": "s390x",
}
_IFACE_TYPES = {
    "ethernet": HostInterfaceType.PHYSICAL,
    "bridge": HostInterfaceType.BRIDGE,
    "bond": HostInterfaceType.BOND,
    "vlan": HostInterfaceType.VLAN,
}


def metalbus_arch(libvirt_arch: str) -> str:
    """MAAS's architecture name (``amd64/generic``) of a libvirt one (``x86_64``)."""
    return _ARCHES.get(libvirt_arch, f"{libvirt_arch}/generic")


def libvirt_arch(arch: str) -> str:
    """libvirt's architecture name of MAAS's (``amd64/generic`` -> ``x86_64``)."""
    base = arch.split("/", 1)[0]
    return _LIBVIRT_ARCH.get(base, base)


@dataclass
class FoundDisk:
    pool: str
    volume: str
    size: int


@dataclass
class FoundNic:
    mac: str
    type: str
    source: str
    mode: str | None


@dataclass
class FoundVm:
    """A domain as discovery saw it."""

    name: str
    uuid: str
    cores: int
    memory: int
    arch: str
    power_state: VmPowerState
    disks: list[FoundDisk]
    nics: list[FoundNic]


@dataclass
class Discovery:
    """Everything discovery learns about a host in one pass."""

    hostname: str
    architecture: str
    cores: int
    cpu_speed: int
    memory: int
    domain_types: list[str]
    pools: list[StoragePool]
    networks: list[LibvirtNetwork]
    interfaces: list[HostInterface]
    vms: list[FoundVm] = field(default_factory=list)


@dataclass(frozen=True)
class HostAccess:
    """How to reach one host's libvirt."""

    uri: str
    password: str | None = None
    ssh_key: str | None = None

    @property
    def key(self) -> str:
        secret = f"{self.password or ''}\0{self.ssh_key or ''}".encode()
        return f"{self.uri}#{hashlib.sha256(secret).hexdigest()}"


class Libvirt:
    """libvirt connections and calls, in a thread pool."""

    def __init__(self, threads: int) -> None:
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="compose-libvirt")
        self._connections: dict[str, Any] = {}
        self._keyfiles: dict[str, str] = {}
        self._lock = threading.Lock()
        self._keydir = tempfile.mkdtemp(prefix="metalbus-compose-keys-")
        os.chmod(self._keydir, 0o700)

    async def run(self, access: HostAccess, call: Callable[[Any], T]) -> T:
        """Run ``call(connection)`` in a libvirt thread.

        Raises:
            ServiceUnavailable: on ``uri``, when libvirt cannot be reached.
            MetalbusError: what ``call`` raised on purpose.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, functools.partial(self._blocking, access, call)
        )

    async def run_plain(self, call: Callable[..., T], *args: Any) -> T:
        """Run ``call(*args)`` in a libvirt thread (no connection needed first)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(call, *args))

    def _blocking(self, access: HostAccess, call: Callable[[Any], T]) -> T:
        conn = self.connection(access)
        try:
            return call(conn)
        except libvirt.libvirtError:
            with self._lock:
                alive = self._connections.get(access.key)
                if alive is not None and not _alive(alive):
                    self._connections.pop(access.key, None)
            raise

    def connection(self, access: HostAccess) -> Any:
        """The open connection to a host (opened if needed); blocking."""
        with self._lock:
            conn = self._connections.get(access.key)
            if conn is not None and _alive(conn):
                return conn
            try:
                conn = self._open(access)
            except libvirt.libvirtError as exc:
                code = exc.get_error_code()
                message = exc.get_error_message() or str(exc)
                if code == libvirt.VIR_ERR_AUTH_FAILED:
                    raise ValidationFailed(
                        f"libvirt refused the credentials: {message}", field="password"
                    ) from None
                raise ServiceUnavailable(
                    f"cannot reach libvirt at {access.uri}: {message}", field="uri"
                ) from None
            self._connections[access.key] = conn
            return conn

    def _open(self, access: HostAccess) -> Any:
        uri = access.uri
        if access.ssh_key:
            path = self._keyfiles.get(access.key)
            if path is None:
                fd, path = tempfile.mkstemp(dir=self._keydir, prefix="key-")
                with os.fdopen(fd, "w") as out:
                    out.write(access.ssh_key.rstrip("\n") + "\n")
                os.chmod(path, 0o600)
                self._keyfiles[access.key] = path
            parts = urllib.parse.urlsplit(uri)
            query = urllib.parse.parse_qsl(parts.query)
            query.append(("keyfile", path))
            uri = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        if access.password is None:
            return libvirt.open(uri)
        password = access.password

        def answer(credentials: list[list[Any]], _: object) -> int:
            for cred in credentials:
                if cred[0] == libvirt.VIR_CRED_PASSPHRASE:
                    cred[4] = password
                elif cred[0] == libvirt.VIR_CRED_AUTHNAME:
                    cred[4] = urllib.parse.urlsplit(uri).username or cred[3] or ""
            return 0

        auth = [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], answer, None]
        return libvirt.openAuth(uri, auth, 0)

    def forget(self, access: HostAccess) -> None:
        """Close and drop a host's connection (its key file too); blocking."""
        with self._lock:
            conn = self._connections.pop(access.key, None)
            path = self._keyfiles.pop(access.key, None)
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def close(self) -> None:
        """Close every connection and stop the threads."""
        with self._lock:
            connections = list(self._connections.values())
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
        for path in self._keyfiles.values():
            with contextlib.suppress(OSError):
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(self._keydir)
        self.executor.shutdown(wait=False, cancel_futures=True)


def _alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


# -- discovery (blocking) -----------------------------------------------------------------


def discover(conn: Any) -> Discovery:
    """Everything a host has, read from libvirt."""
    model, memory_mib, cpus, mhz, *_ = conn.getInfo()
    return Discovery(
        hostname=conn.getHostname(),
        architecture=metalbus_arch(model),
        cores=int(cpus),
        cpu_speed=int(mhz),
        memory=int(memory_mib),
        domain_types=domain_types(conn),
        pools=pools(conn),
        networks=networks(conn),
        interfaces=interfaces(conn),
        vms=[found_vm(conn, dom) for dom in conn.listAllDomains(0)],
    )


def domain_types(conn: Any, arch: str | None = None) -> list[str]:
    """The domain types the host offers for full-virtualization (``hvm``) guests of ``arch``
    (a libvirt architecture, ``x86_64``; any when None): ``kvm``, ``qemu``, ``test``.

    libvirt lists ``kvm`` only where it can run KVM guests of that architecture (``/dev/kvm``
    usable, a QEMU that supports it); a host with QEMU alone offers ``qemu`` (TCG), and
    another architecture's emulator never makes ``kvm`` look available for this one. A host
    that lists no guest of ``arch`` at all (libvirt's test driver lists only i686 but takes
    any) answers for every architecture.
    """
    caps = ET.fromstring(conn.getCapabilities())
    by_arch: dict[str, list[str]] = {}
    for guest in caps.iterfind("guest"):
        if guest.findtext("os_type", "hvm") != "hvm":
            continue
        for arch_el in guest.iterfind("arch"):
            kinds = by_arch.setdefault(arch_el.get("name", ""), [])
            for dom in arch_el.iterfind("domain"):
                kind = dom.get("type")
                if kind and kind not in kinds:
                    kinds.append(kind)
    if arch is not None and by_arch.get(arch):
        return by_arch[arch]
    return list(dict.fromkeys(k for kinds in by_arch.values() for k in kinds))


def pools(conn: Any) -> list[StoragePool]:
    """Storage pools with their sizes (active pools are refreshed first)."""
    out = []
    for pool in conn.listAllStoragePools(0):
        active = bool(pool.isActive())
        if active:
            with contextlib.suppress(libvirt.libvirtError):
                pool.refresh(0)
        _, capacity, allocation, available = pool.info()
        root = ET.fromstring(pool.XMLDesc(0))
        out.append(
            StoragePool(
                name=pool.name(),
                type=root.get("type", "dir"),
                path=root.findtext("target/path"),
                total=int(capacity),
                used=int(allocation),
                available=int(available),
                active=active,
            )
        )
    return sorted(out, key=lambda p: p.name)


def _cidr(address: str, prefix: str | None, netmask: str | None) -> str:
    if prefix is None and netmask is not None:
        prefix = str(ipaddress.ip_network(f"0.0.0.0/{netmask}").prefixlen)
    return str(ipaddress.ip_interface(f"{address}/{prefix or 32}"))


def networks(conn: Any) -> list[LibvirtNetwork]:
    """libvirt networks: bridge, whether libvirt's DHCP runs on it, its own addresses."""
    out = []
    for net in conn.listAllNetworks(0):
        root = ET.fromstring(net.XMLDesc(0))
        addresses, dhcp = [], False
        for ip in root.iterfind("ip"):
            if ip.get("address"):
                addresses.append(_cidr(ip.get("address", ""), ip.get("prefix"), ip.get("netmask")))
            dhcp = dhcp or ip.find("dhcp") is not None
        bridge = root.find("bridge")
        out.append(
            LibvirtNetwork(
                name=net.name(),
                bridge=bridge.get("name") if bridge is not None else None,
                dhcp=dhcp,
                active=bool(net.isActive()),
                addresses=addresses,
            )
        )
    return sorted(out, key=lambda n: n.name)


def interfaces(conn: Any) -> list[HostInterface]:
    """Host interfaces (bridge, physical, bond, vlan) with MAC and addresses.

    A host whose libvirt has no interface driver reports none.
    """
    try:
        found = conn.listAllInterfaces(0)
    except libvirt.libvirtError:
        return []
    out = []
    for iface in found:
        root = ET.fromstring(iface.XMLDesc(0))
        kind = _IFACE_TYPES.get(root.get("type", ""), HostInterfaceType.PHYSICAL)
        members = [m.get("name", "") for m in root.iterfind("bridge/interface")]
        members += [m.get("name", "") for m in root.iterfind("bond/interface")]
        members += [m.get("name", "") for m in root.iterfind("vlan/interface")]
        mac = None
        with contextlib.suppress(libvirt.libvirtError):
            mac = iface.MACString() or None
        if not mac:
            mac_el = root.find("mac")
            if mac_el is None:  # a bridge or bond shows its first port's MAC
                mac_el = root.find("*/interface/mac")
            mac = mac_el.get("address") if mac_el is not None else None
        links = [
            InterfaceLink(address=_cidr(ip.get("address", ""), ip.get("prefix"), None))
            for ip in root.iterfind("protocol/ip")
            if ip.get("address")
        ]
        out.append(
            HostInterface(
                name=iface.name(),
                type=kind,
                mac=mac.lower() if mac else None,
                active=bool(iface.isActive()),
                members=[m for m in members if m],
                links=links,
            )
        )
    return sorted(out, key=lambda i: i.name)


_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: VmPowerState.ON,
    libvirt.VIR_DOMAIN_BLOCKED: VmPowerState.ON,
    libvirt.VIR_DOMAIN_PAUSED: VmPowerState.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VmPowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: VmPowerState.ON,
    libvirt.VIR_DOMAIN_SHUTOFF: VmPowerState.OFF,
    libvirt.VIR_DOMAIN_CRASHED: VmPowerState.OFF,
}


def power_state(dom: Any) -> VmPowerState:
    state = dom.state(0)[0]
    return _STATES.get(state, VmPowerState.UNKNOWN)


def found_vm(conn: Any, dom: Any) -> FoundVm:
    """A domain's cores, memory, disks (pool, volume, size), NICs and power state."""
    root = ET.fromstring(dom.XMLDesc(0))
    disks = []
    for disk in root.iterfind("devices/disk[@device='disk']"):
        source = disk.find("source")
        if source is None:
            continue
        found = _disk_volume(conn, source)
        if found is not None:
            disks.append(found)
    nics = []
    for nic in root.iterfind("devices/interface"):
        mac = nic.find("mac")
        source = nic.find("source")
        src = source.attrib if source is not None else {}
        nics.append(
            FoundNic(
                mac=(mac.get("address", "") if mac is not None else "").lower(),
                type=nic.get("type", ""),
                source=src.get("bridge") or src.get("dev") or src.get("network") or "",
                mode=src.get("mode"),
            )
        )
    os_type = root.find("os/type")
    return FoundVm(
        name=dom.name(),
        uuid=dom.UUIDString(),
        cores=int(root.findtext("vcpu") or 1),
        memory=dom.maxMemory() // 1024,
        arch=metalbus_arch(os_type.get("arch", "x86_64") if os_type is not None else "x86_64"),
        power_state=power_state(dom),
        disks=disks,
        nics=nics,
    )


def _disk_volume(conn: Any, source: ET.Element) -> FoundDisk | None:
    try:
        if source.get("pool") and source.get("volume"):
            pool = conn.storagePoolLookupByName(source.get("pool"))
            vol = pool.storageVolLookupByName(source.get("volume"))
        elif source.get("file"):
            vol = conn.storageVolLookupByPath(source.get("file"))
            pool = vol.storagePoolLookupByVolume()
        else:
            return None
        return FoundDisk(pool=pool.name(), volume=vol.name(), size=int(vol.info()[1]))
    except libvirt.libvirtError:
        return None


# -- composing (blocking) -----------------------------------------------------------------


@dataclass(frozen=True)
class VolumePlan:
    pool: str
    name: str
    size: int


def create_volume(conn: Any, plan: VolumePlan) -> str:
    """Create a volume in its pool (qcow2 in file pools, raw elsewhere); its format.

    Raises:
        Conflict: on ``storage``, when libvirt refuses it (no room, name taken).
    """
    pool = conn.storagePoolLookupByName(plan.pool)
    root = ET.fromstring(pool.XMLDesc(0))
    file_pool = root.get("type") in ("dir", "fs", "netfs")
    fmt = "qcow2" if file_pool else "raw"
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = plan.name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(plan.size)
    if file_pool:
        ET.SubElement(vol, "allocation", unit="bytes").text = "0"
        ET.SubElement(ET.SubElement(vol, "target"), "format", type=fmt)
    try:
        pool.createXML(ET.tostring(vol, encoding="unicode"), 0)
    except libvirt.libvirtError as exc:
        raise Conflict(
            f"libvirt could not create volume {plan.name} in pool {plan.pool}: "
            f"{exc.get_error_message()}",
            field="storage",
        ) from None
    return fmt


def delete_volume(conn: Any, pool_name: str, volume: str) -> bool:
    """Delete a volume; False when it was not there."""
    try:
        vol = conn.storagePoolLookupByName(pool_name).storageVolLookupByName(volume)
    except libvirt.libvirtError:
        return False
    vol.delete(0)
    return True


def define(conn: Any, xml: str, *, start: bool) -> Any:
    """Define a domain, mark it autostart, and start it when asked."""
    dom = conn.defineXML(xml)
    try:
        dom.setAutostart(1)
        if start:
            dom.create()
    except libvirt.libvirtError:
        undefine(conn, dom.UUIDString())
        raise
    return dom


def lookup(conn: Any, uuid: str) -> Any | None:
    """The domain with this UUID, or None."""
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_INVALID_ARG):
            return None
        raise


def undefine(conn: Any, uuid: str) -> list[FoundDisk]:
    """Destroy (if running) and undefine a domain; the volumes it had (not yet deleted)."""
    dom = lookup(conn, uuid)
    if dom is None:
        return []
    disks = found_vm(conn, dom).disks
    if dom.isActive():
        dom.destroy()
    flags = (
        libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    )
    try:
        dom.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        # Drivers without managed save, snapshots or NVRAM (the test driver) refuse the flags.
        if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        dom.undefine()
    return disks


def domain_xml(conn: Any, uuid: str) -> str | None:
    """The domain's persistent XML, or None when there is no such domain."""
    dom = lookup(conn, uuid)
    return None if dom is None else str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
