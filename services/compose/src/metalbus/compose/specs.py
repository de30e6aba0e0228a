"""The two small languages of a compose request: storage and interface constraints.

Storage, MAAS's form: ``root:20(ssd),data:100`` is a 20 GB disk labelled ``root`` in the
pool tagged ``ssd`` and a 100 GB disk labelled ``data``. Sizes are decimal GB (10^9 bytes);
a tag names a storage pool by its name or its type; several tags go inside the
parentheses, comma-separated, and all must match.

Interfaces: ``eth0:space=dmz,ip=10.0.0.5;eth1:subnet=10.1.0.0/24`` is two interfaces; each
label becomes the VM interface's name. Keys: ``space`` (name or id), ``subnet`` (CIDR or
id), ``vlan`` (id), ``vid``, ``fabric`` (name or id), ``ip``, ``type`` (``bridge`` or
``macvlan``), ``mode`` (a macvlan mode), ``name`` (a host interface).

Every fault is a ValidationFailed on the request field it came from, saying which entry.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from decimal import Decimal

from metalbus.shared.contract.compose import AttachmentType, MacvlanMode
from metalbus.shared.errors import ValidationFailed

GB = 1000**3
MAX_DISK_BYTES = 2**63 - 1  # libvirt and the database hold sizes as 64-bit numbers
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_DISK = re.compile(
    r"^(?:(?P<label>[^:()]+):)?(?P<size>[0-9]+(?:\.[0-9]+)?)(?:\((?P<tags>[^()]*)\))?$"
)
INTERFACE_KEYS = ("space", "subnet", "vlan", "vid", "fabric", "ip", "type", "mode", "name")


@dataclass(frozen=True)
class DiskSpec:
    """One disk asked for: its label, size in bytes, and the pool tags it must match."""

    label: str
    size: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class InterfaceSpec:
    """One interface asked for, with its constraints (None: not constrained)."""

    label: str
    space: str | None = None
    subnet: str | None = None
    vlan: int | None = None
    vid: int | None = None
    fabric: str | None = None
    ip: str | None = None
    type: AttachmentType | None = None
    mode: MacvlanMode | None = None
    name: str | None = None
    given: tuple[str, ...] = field(default=())

    @property
    def constrains_network(self) -> bool:
        """Whether the entry narrows where the interface goes (beyond type and mode)."""
        return any(
            v is not None
            for v in (self.space, self.subnet, self.vlan, self.vid, self.fabric, self.ip, self.name)
        )


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_storage(text: str | None, default_gb: int) -> list[DiskSpec]:
    """The disks of ``text``; None or blank: one ``root`` disk of ``default_gb``.

    Raises:
        ValidationFailed: on ``storage``, naming the entry at fault.
    """
    if text is None or not text.strip():
        return [DiskSpec("root", default_gb * GB)]
    disks: list[DiskSpec] = []
    for n, raw in enumerate(_split_top(text, ","), start=1):
        entry = raw.strip()
        match = _DISK.match(entry)
        if not match:
            raise ValidationFailed(
                f"storage entry {n} ({entry!r}) is not label:size(tags) with size in GB",
                field="storage",
            )
        label = (match["label"] or ("root" if n == 1 else f"disk{n}")).strip()
        if not _LABEL.match(label):
            raise ValidationFailed(
                f"storage entry {n}: {label!r} is not a valid label", field="storage"
            )
        # Decimal, not float: a long digit string is a number, never inf (OverflowError).
        size = int(Decimal(match["size"]) * GB)
        if size <= 0:
            raise ValidationFailed(f"storage entry {n}: the size must be > 0 GB", field="storage")
        if size > MAX_DISK_BYTES:
            raise ValidationFailed(f"storage entry {n}: the size is too large", field="storage")
        tags = tuple(t.strip() for t in (match["tags"] or "").split(",") if t.strip())
        if any(d.label == label for d in disks):
            raise ValidationFailed(f"storage: the label {label!r} is used twice", field="storage")
        disks.append(DiskSpec(label, size, tags))
    return disks


def parse_interfaces(text: str | None) -> list[InterfaceSpec]:
    """The interface constraints of ``text`` (empty list: none given).

    Raises:
        ValidationFailed: on ``interfaces``, naming the entry and key at fault.
    """
    if text is None or not text.strip():
        return []
    specs: list[InterfaceSpec] = []
    for n, raw in enumerate(text.split(";"), start=1):
        entry = raw.strip()
        label, colon, rest = entry.partition(":")
        label = label.strip()
        if not colon or not _LABEL.match(label):
            raise ValidationFailed(
                f"interfaces entry {n} ({entry!r}) is not label:key=value,...",
                field="interfaces",
            )
        if any(s.label == label for s in specs):
            raise ValidationFailed(
                f"interfaces: the label {label!r} is used twice", field="interfaces"
            )
        values: dict[str, object] = {}
        for pair in (p.strip() for p in rest.split(",") if p.strip()):
            key, eq, value = pair.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not eq or not value:
                raise ValidationFailed(
                    f"interfaces entry {label!r}: {pair!r} is not key=value", field="interfaces"
                )
            if key not in INTERFACE_KEYS:
                raise ValidationFailed(
                    f"interfaces entry {label!r}: unknown key {key!r} "
                    f"(known: {', '.join(INTERFACE_KEYS)})",
                    field="interfaces",
                )
            if key in values:
                raise ValidationFailed(
                    f"interfaces entry {label!r}: {key} is given twice", field="interfaces"
                )
            values[key] = _value(label, key, value)
        given = tuple(values)
        spec = InterfaceSpec(label=label, given=given, **values)  # type: ignore[arg-type]
        if spec.mode is not None and spec.type is AttachmentType.BRIDGE:
            raise ValidationFailed(
                f"interfaces entry {label!r}: a mode goes with type=macvlan, not bridge",
                field="interfaces",
            )
        specs.append(spec)
    return specs


def _value(label: str, key: str, value: str) -> object:
    where = f"interfaces entry {label!r}"
    try:
        if key in ("vlan", "vid"):
            number = int(value)
            if key == "vid" and not 0 <= number <= 4094:
                raise ValueError
            if key == "vlan" and number < 1:
                raise ValueError
            return number
        if key == "ip":
            return str(ipaddress.ip_address(value))
        if key == "subnet":
            if value.isdigit():
                return value
            return str(ipaddress.ip_network(value, strict=True))
        if key == "type":
            if value not in ("bridge", "macvlan"):
                raise ValueError
            return AttachmentType(value)
        if key == "mode":
            return MacvlanMode(value)
    except ValueError:
        raise ValidationFailed(
            f"{where}: {value!r} is not a valid {key}", field="interfaces"
        ) from None
    return value
