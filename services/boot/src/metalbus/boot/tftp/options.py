"""Option negotiation (RFC 2347): blksize (2348), timeout and tsize (2349), windowsize (7440).

Options the server does not know, or values out of range, are left out of the OACK (RFC
2347: the client then uses the default); a blksize larger than the server allows is lowered,
as RFC 2348 permits, and so is a windowsize.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_BLKSIZE = 8
MAX_BLKSIZE = 65464
DEFAULT_BLKSIZE = 512


@dataclass(frozen=True)
class Params:
    """What one transfer uses, and the options to acknowledge (empty: no OACK)."""

    blksize: int = DEFAULT_BLKSIZE
    timeout_s: float = 1.0
    windowsize: int = 1
    accepted: dict[str, str] | None = None


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) <= 9 else None


def negotiate(
    requested: dict[str, str],
    size: int,
    *,
    default_timeout_s: float,
    max_blksize: int = MAX_BLKSIZE,
    max_windowsize: int = 64,
) -> Params:
    """The parameters of a read transfer of ``size`` bytes and the OACK's options."""
    accepted: dict[str, str] = {}
    blksize, timeout_s, windowsize = DEFAULT_BLKSIZE, default_timeout_s, 1
    value = _int(requested.get("blksize", ""))
    if value is not None and value >= MIN_BLKSIZE:
        blksize = min(value, max_blksize)
        accepted["blksize"] = str(blksize)
    value = _int(requested.get("timeout", ""))
    if value is not None and 1 <= value <= 255:
        timeout_s = float(value)
        accepted["timeout"] = str(value)
    if "tsize" in requested:  # a reader sends 0 and learns the size (RFC 2349)
        accepted["tsize"] = str(size)
    value = _int(requested.get("windowsize", ""))
    if value is not None and 1 <= value <= 65535:
        windowsize = min(value, max_windowsize)
        accepted["windowsize"] = str(windowsize)
    return Params(blksize, timeout_s, windowsize, accepted or None)
