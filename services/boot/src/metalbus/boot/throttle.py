"""How often the boot service reports the same thing, and how much it reports in all.

Events about packets (a PXE DISCOVER from an unknown MAC, a TFTP transfer) are driven by
whoever sends packets: a PXE ROM repeats itself, and a flood of forged requests could
otherwise fill the event stream. :class:`Throttle` lets one event per key through per
``interval_s``, and at most ``per_s`` a second in all (a token bucket holding one second's
worth). Only keys let through are remembered, so memory stays bounded by
``per_s * interval_s`` however many keys a flood makes up.
"""

from __future__ import annotations

from collections.abc import Hashable


class Throttle:
    """``allow(key, now)``: whether an event about ``key`` may go out now."""

    def __init__(self, interval_s: float, per_s: float) -> None:
        self.interval_s = interval_s
        self.per_s = per_s
        self._last: dict[Hashable, float] = {}
        self._tokens = per_s
        self._refilled: float | None = None

    def allow(self, key: Hashable, now: float) -> bool:
        """True (and counted) when neither the key's interval nor the overall rate is
        exceeded; ``now`` is a monotonic clock."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        if self._refilled is not None:
            self._tokens = min(self.per_s, self._tokens + (now - self._refilled) * self.per_s)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        self._last[key] = now
        if len(self._last) > 2 * max(self.per_s * self.interval_s, 64):
            self._prune(now)
        return True

    def forget(self, key: Hashable) -> None:
        """Let the next event about ``key`` through (its report was lost)."""
        self._last.pop(key, None)

    def _prune(self, now: float) -> None:
        self._last = {k: t for k, t in self._last.items() if now - t < self.interval_s}
