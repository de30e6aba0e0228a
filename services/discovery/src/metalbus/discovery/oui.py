"""MAC vendors from the IEEE registries (Debian's ``ieee-data``: oui.csv, mam.csv, oui36.csv).

MA-L assigns the first 24 bits, MA-M 28, MA-S 36; the longest assignment that matches wins.
Loaded once at start in a thread (about 40,000 lines).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


class VendorTable:
    """Vendor names by MAC prefix (hex digits, upper case)."""

    def __init__(self) -> None:
        self._by_prefix: dict[str, str] = {}
        self._lengths: list[int] = []

    def __len__(self) -> int:
        return len(self._by_prefix)

    def add(self, prefix: str, name: str) -> None:
        """Record ``name`` for the hex ``prefix`` (6, 7 or 9 digits)."""
        prefix = prefix.strip().upper()
        self._by_prefix[prefix] = name.strip()
        if len(prefix) not in self._lengths:
            self._lengths = sorted({*self._lengths, len(prefix)}, reverse=True)

    def vendor(self, mac: str) -> str | None:
        """The vendor of ``mac`` (``aa:bb:cc:dd:ee:ff``), or None when unassigned/unknown."""
        digits = mac.replace(":", "").upper()
        for length in self._lengths:
            found = self._by_prefix.get(digits[:length])
            if found is not None:
                return found
        return None


def load(paths: Iterable[str]) -> VendorTable:
    """Read the registry CSV files that exist (a missing one is logged and skipped)."""
    table = VendorTable()
    for name in paths:
        path = Path(name)
        if not path.is_file():
            log.warning("MAC vendor file %s is missing (Debian package ieee-data)", path)
            continue
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            for row in csv.DictReader(handle):
                prefix, org = row.get("Assignment"), row.get("Organization Name")
                if prefix and org:
                    table.add(prefix, org)
    return table
