"""The domain XML of a composed VM.

virtio disks (volumes in their pools) and virtio NICs; boot from the network first, then
the disk (disk only when network boot is off); a serial console on a pty whose output is
logged to a file on the host; ACPI and APIC on x86. Autostart is set through the API after
the domain is defined (it is not part of the XML).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from metalbus.shared.contract.compose import AttachmentType, MacvlanMode


@dataclass(frozen=True)
class DiskDevice:
    pool: str
    volume: str
    format: str


@dataclass(frozen=True)
class NicDevice:
    mac: str
    attach_type: AttachmentType
    source: str
    mode: MacvlanMode | None = None


@dataclass(frozen=True)
class DomainSpec:
    name: str
    uuid: str
    domain_type: str
    arch: str
    cores: int
    memory_mib: int
    disks: tuple[DiskDevice, ...]
    nics: tuple[NicDevice, ...]
    network_boot: bool
    serial_log: str


def _disk_target(n: int) -> str:
    letters = ""
    n += 1
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return f"vd{letters}"


def build(spec: DomainSpec) -> str:
    """The libvirt domain XML of ``spec``."""
    dom = ET.Element("domain", type=spec.domain_type)
    ET.SubElement(dom, "name").text = spec.name
    ET.SubElement(dom, "uuid").text = spec.uuid
    ET.SubElement(dom, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(dom, "currentMemory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(dom, "vcpu").text = str(spec.cores)
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch=spec.arch).text = "hvm"
    if spec.network_boot:
        ET.SubElement(os_el, "boot", dev="network")
    ET.SubElement(os_el, "boot", dev="hd")
    if spec.arch in ("x86_64", "i686"):
        features = ET.SubElement(dom, "features")
        ET.SubElement(features, "acpi")
        ET.SubElement(features, "apic")
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    ET.SubElement(dom, "on_reboot").text = "restart"
    ET.SubElement(dom, "on_crash").text = "restart"
    devices = ET.SubElement(dom, "devices")
    for n, disk in enumerate(spec.disks):
        el = ET.SubElement(devices, "disk", type="volume", device="disk")
        ET.SubElement(el, "driver", name="qemu", type=disk.format, cache="none")
        ET.SubElement(el, "source", pool=disk.pool, volume=disk.volume)
        ET.SubElement(el, "target", dev=_disk_target(n), bus="virtio")
    for nic in spec.nics:
        if nic.attach_type is AttachmentType.BRIDGE:
            el = ET.SubElement(devices, "interface", type="bridge")
            ET.SubElement(el, "source", bridge=nic.source)
        elif nic.attach_type is AttachmentType.MACVLAN:
            el = ET.SubElement(devices, "interface", type="direct")
            mode = nic.mode or MacvlanMode.BRIDGE
            # libvirt spells MAAS's passthru "passthrough".
            libvirt_mode = "passthrough" if mode is MacvlanMode.PASSTHRU else mode.value
            ET.SubElement(el, "source", dev=nic.source, mode=libvirt_mode)
        else:
            el = ET.SubElement(devices, "interface", type="network")
            ET.SubElement(el, "source", network=nic.source)
        ET.SubElement(el, "mac", address=nic.mac)
        ET.SubElement(el, "model", type="virtio")
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "log", file=spec.serial_log, append="on")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    ET.SubElement(devices, "memballoon", model="virtio")
    return ET.tostring(dom, encoding="unicode")
