"""The one place where NATS subjects, stream names and event types are spelled.

Scheme (documented in docs/architecture.md and docs/asyncapi.yaml):

- commands (request/reply, served in the queue group ``metalbus-<service>``):
  ``metalbus.cmd.<service>.<action>``
- events (JetStream, one stream per owning service, ``METALBUS_<SERVICE>``):
  ``metalbus.evt.<service>.<entity>.<event>``
- CloudEvents type of an event: ``io.metalbus.<service>.<entity>.<event>.v<version>``

No other module writes a subject by hand; they call the builders below.
"""

from __future__ import annotations

import re
from typing import Final

ROOT: Final = "metalbus"
SERVICES: Final = ("api", "ipam", "compose", "boot", "power", "discovery")

_TOKEN = re.compile(r"^[a-z][a-z0-9_-]*$")


def _check(kind: str, token: str) -> str:
    if not _TOKEN.match(token):
        raise ValueError(f"{kind} {token!r} must be lower-case letters, digits, '-' or '_'")
    return token


def command_subject(service: str, action: str) -> str:
    """Subject of a request/reply command, e.g. ``metalbus.cmd.ipam.allocate``."""
    return f"{ROOT}.cmd.{_check('service', service)}.{_check('action', action)}"


def service_commands(service: str) -> str:
    """Wildcard matching every command a service serves (``metalbus.cmd.ipam.*``)."""
    return f"{ROOT}.cmd.{_check('service', service)}.*"


def event_subject(service: str, entity: str, event: str) -> str:
    """Subject an event is published on, e.g. ``metalbus.evt.ipam.subnet.created``."""
    return (
        f"{ROOT}.evt.{_check('service', service)}.{_check('entity', entity)}."
        f"{_check('event', event)}"
    )


def event_type(service: str, entity: str, event: str, version: int = 1) -> str:
    """CloudEvents ``type`` of an event, e.g. ``io.metalbus.ipam.subnet.created.v1``."""
    if version < 1:
        raise ValueError("event versions start at 1")
    return f"io.{ROOT}.{service}.{entity}.{event}.v{version}"


def subject_for_type(type_: str) -> str:
    """The subject an event of the given CloudEvents type is published on."""
    parts = type_.split(".")
    if len(parts) != 6 or parts[:2] != ["io", ROOT] or not re.fullmatch(r"v\d+", parts[5]):
        raise ValueError(f"{type_!r} is not a metalbus event type")
    return event_subject(parts[2], parts[3], parts[4])


def service_events(service: str) -> str:
    """Wildcard matching every event a service publishes."""
    return f"{ROOT}.evt.{_check('service', service)}.>"


def entity_events(service: str, entity: str) -> str:
    """Wildcard matching every event about one kind of object (``metalbus.evt.boot.lease.>``)."""
    return f"{ROOT}.evt.{_check('service', service)}.{_check('entity', entity)}.>"


ALL_EVENTS: Final = f"{ROOT}.evt.>"


def inbox_prefix(service: str) -> str:
    """Prefix of the reply subjects of a service's requests (its NATS user reads only those)."""
    return f"_INBOX_{service}"


def stream_name(service: str) -> str:
    """Name of the JetStream stream that holds a service's events."""
    return f"METALBUS_{_check('service', service).upper()}"


def queue_group(service: str) -> str:
    """Queue group (and nats.micro service name) that replicas of a service share."""
    return f"{ROOT}-{_check('service', service)}"


def event_source(service: str) -> str:
    """CloudEvents ``source`` of events a service emits."""
    return f"/{ROOT}/{_check('service', service)}"
