"""Which events a subscription wants: event types and prefix patterns.

A pattern is written against an event type without its ``io.metalbus.`` prefix
(``<service>.<entity>.<event>.v<n>``); the full type is accepted too and shortened.

- ``ipam.subnet.created.v1``: that type only.
- ``api.machine.*``: every type that starts with ``api.machine.`` (any event, any version).
- ``machine.*``: the service may be left out; then the pattern is matched from the entity on.
- ``*``: every event.

A pattern must match at least one event type this version of metalbus knows, so a typo is
refused when the subscription is written instead of silently matching nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import metalbus.shared.contract  # noqa: F401  (registers every event type)
from metalbus.shared.events import EVENT_TYPES

_FULL = "io.metalbus."


def short_type(type_: str) -> str:
    """``io.metalbus.ipam.subnet.created.v1`` -> ``ipam.subnet.created.v1``."""
    return type_.removeprefix(_FULL)


def matches(pattern: str, type_: str) -> bool:
    """Whether an event of type ``type_`` (full CloudEvents type) is wanted by ``pattern``."""
    if pattern == "*":
        return True
    short = short_type(type_)
    from_entity = short.partition(".")[2]
    if pattern.endswith(".*"):
        prefix = pattern[:-1]
        return short.startswith(prefix) or from_entity.startswith(prefix)
    return pattern in (short, from_entity)


def matches_any(patterns: Iterable[str], type_: str) -> bool:
    """Whether any of ``patterns`` wants ``type_``."""
    return any(matches(p, type_) for p in patterns)


def check_pattern(pattern: str) -> str:
    """The pattern in its stored (short) form. Raises ValueError when it is malformed or
    matches no known event type."""
    value = short_type(pattern.strip())
    if value == "*":
        return value
    body = value[:-2] if value.endswith(".*") else value
    if not body or "*" in body or any(not part for part in body.split(".")):
        raise ValueError(
            f"{pattern!r} is not an event type or a prefix pattern "
            "(e.g. ipam.subnet.created.v1, api.machine.*, *)"
        )
    if not any(matches(value, known) for known in EVENT_TYPES):
        raise ValueError(f"{pattern!r} matches no event type metalbus knows")
    return value
