"""The AsyncAPI 3.0 document of the metalbus bus, generated from the shared models.

Nothing here is written by hand that the code already knows. Every event type that a
module of :mod:`metalbus.shared.contract` registers with :func:`metalbus.shared.events.event`
becomes a channel (address = the payload's subject), a message (name = the CloudEvents type,
payload = the envelope around the payload's JSON schema) and a ``send`` operation of the
owning service. Every command - ``ping`` and ``status`` of each service, plus any
:class:`~metalbus.shared.commands.Command` defined at module level in the contract - becomes
a request channel, a reply channel and a ``receive`` operation with an AsyncAPI 3 ``reply``.
The error reply (:meth:`metalbus.shared.errors.MetalbusError.to_dict` with nats.micro's
error headers) is one shared message.

The document is YAML written by a tiny emitter (metalbus-shared does not depend on
PyYAML) and is deterministic, so a test can compare it with ``docs/asyncapi.yaml``::

    python -m metalbus.shared.asyncapi > docs/asyncapi.yaml   # what `make asyncapi` runs
"""

from __future__ import annotations

import importlib
import json
import math
import pkgutil
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from . import __version__, contract, subjects
from .bus import ERROR_CODE_HEADER, ERROR_HEADER, MSG_ID_HEADER
from .commands import Command, ping, status
from .errors import ERRORS_BY_CODE, MetalbusError
from .events import EVENT_TYPES, Event, EventPayload

ASYNCAPI_VERSION: Final = "3.0.0"
NATS_BINDING_VERSION: Final = "0.1.0"
SCHEMA_REF: Final = "#/components/schemas/{model}"
EVENT_CONTENT_TYPE: Final = "application/cloudevents+json"
ERROR_MESSAGE: Final = "MetalbusError.reply"

HEADER_COMMENT: Final = (
    "# The metalbus bus as AsyncAPI 3.0 (NATS request/reply and JetStream events).\n"
    "# Generated from metalbus.shared by `make asyncapi` (python -m metalbus.shared.asyncapi):\n"
    "# do not edit by hand. The body is plain YAML with every string quoted.\n"
)

ENVELOPE_ATTRIBUTES: Final[Mapping[str, str]] = {
    "specversion": "CloudEvents version.",
    "id": "Unique per event; also the JetStream `Nats-Msg-Id` and the key consumers "
    "de-duplicate on.",
    "source": "The emitting service, `/metalbus/<service>`.",
    "type": "`io.metalbus.<service>.<entity>.<event>.v<n>`.",
    "subject": "The id of the object the event is about (null when there is none).",
    "time": "When the fact happened (UTC).",
    "datacontenttype": "Media type of `data`.",
}

TRACE_HEADERS: Final[Mapping[str, Any]] = {
    "traceparent": {
        "type": "string",
        "description": "W3C trace context of the sender's span (present when a trace is active).",
    },
    "tracestate": {"type": "string", "description": "W3C trace state, when there is any."},
}


# -- collecting what the contract defines ------------------------------------------------


def contract_modules() -> list[ModuleType]:
    """Import every module of :mod:`metalbus.shared.contract` (which registers its events).

    Returns:
        The modules, sorted by name.
    """
    modules = [contract]
    for info in sorted(pkgutil.iter_modules(contract.__path__), key=lambda i: i.name):
        modules.append(importlib.import_module(f"{contract.__name__}.{info.name}"))
    return modules


def contract_events() -> dict[str, type[EventPayload]]:
    """The registered event types whose payloads the contract defines, by CloudEvents type.

    Payloads registered elsewhere (a test's fake events) are in
    :data:`~metalbus.shared.events.EVENT_TYPES` too, but are not part of the wire contract.
    """
    names = {m.__name__ for m in contract_modules()}
    return {t: EVENT_TYPES[t] for t in sorted(EVENT_TYPES) if EVENT_TYPES[t].__module__ in names}


def standard_commands() -> list[Command[Any, Any]]:
    """``ping`` and ``status`` of every service (the runtime serves both in each one)."""
    out: list[Command[Any, Any]] = []
    for service in subjects.SERVICES:
        out += [ping(service), status(service)]
    return out


def all_commands() -> list[Command[Any, Any]]:
    """The standard commands plus every module-level ``Command`` in the contract, by subject.

    Raises:
        ValueError: two different commands are served on one subject.
    """
    found: dict[str, Command[Any, Any]] = {}
    candidates: list[Command[Any, Any]] = standard_commands()
    for module in contract_modules():
        candidates += [v for v in vars(module).values() if isinstance(v, Command)]
    for command in candidates:
        existing = found.setdefault(command.subject, command)
        if existing != command:
            raise ValueError(f"two different commands are served on {command.subject}")
    return [found[s] for s in sorted(found)]


# -- building the document ---------------------------------------------------------------


def build_document(
    events: Mapping[str, type[EventPayload]] | None = None,
    commands: Sequence[Command[Any, Any]] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document as plain data (dicts, lists, strings, numbers).

    Args:
        events: payload models by CloudEvents type; :func:`contract_events` when omitted.
        commands: the request/reply commands; :func:`all_commands` when omitted.

    Returns:
        The document; channels, operations and components are sorted by id.

    Raises:
        ValueError: two commands or events would get the same id in the document.
    """
    if events is None:
        events = contract_events()
    if commands is None:
        commands = all_commands()
    event_types = sorted(events)
    commands = sorted(commands, key=lambda c: c.subject)

    envelope_models = {t: _envelope_model(events[t]) for t in event_types}
    schema_models: list[type[BaseModel]] = list(envelope_models.values())
    for command in commands:
        schema_models += [command.request, command.response]
    refs, schemas = _schemas(schema_models)

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {ERROR_MESSAGE: _error_message()}

    by_subject: dict[str, list[str]] = {}
    for type_ in event_types:
        by_subject.setdefault(subjects.subject_for_type(type_), []).append(type_)
        envelope = schemas.pop(_ref_name(refs[envelope_models[type_]]))
        _add(messages, type_, _event_message(type_, events[type_], envelope))
    for subject, types in sorted(by_subject.items()):
        model = events[types[0]]
        _add(channels, subject, _event_channel(subject, model.event_service, types))
        _add(operations, f"publish.{subject}", _event_operation(subject, model, types))

    for command in commands:
        request = f"{_ref_name(refs[command.request])}.request"
        response = f"{_ref_name(refs[command.response])}.reply"
        messages.setdefault(request, _command_message(command.request, refs, request=True))
        messages.setdefault(response, _command_message(command.response, refs, request=False))
        reply_id = f"{command.subject}.reply"
        _add(channels, command.subject, _request_channel(command, request))
        _add(channels, reply_id, _reply_channel(command, response))
        _add(operations, f"serve.{command.subject}", _command_operation(command, reply_id))

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "metalbus bus",
            "version": __version__,
            "description": _INFO_DESCRIPTION,
            "tags": [{"name": s} for s in subjects.SERVICES],
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "The default `nats_url` of every service "
                "(`METALBUS_<SERVICE>_NATS_URL`). `metalbus up` starts its own nats-server "
                "with JetStream on a free port instead and points the services at it.",
            }
        },
        "channels": _sorted(channels),
        "operations": _sorted(operations),
        "components": {"messages": _sorted(messages), "schemas": _sorted(schemas)},
    }


_INFO_DESCRIPTION: Final = (
    "Everything that crosses a service boundary in metalbus, generated from `metalbus.shared`.\n\n"
    "- Commands (request/reply) are served with nats.micro on "
    "`metalbus.cmd.<service>.<action>` in the queue group `metalbus-<service>`, so replicas "
    "split the load; the reply goes to the requester's inbox. A failure is answered with "
    f"the `{ERROR_CODE_HEADER}` (HTTP status) and `{ERROR_HEADER}` (message) headers and "
    "the error's JSON as the body.\n"
    "- Events are CloudEvents 1.0 envelopes (structured JSON) published to JetStream on "
    "`metalbus.evt.<service>.<entity>.<event>`, kept in the stream `METALBUS_<SERVICE>` "
    f"(subjects `metalbus.evt.<service>.>`), with `{MSG_ID_HEADER}` = the event id so a "
    "re-send inside the duplicate window is dropped. All versions of an event share one "
    "subject; the envelope's `type` tells them apart."
)


def _envelope_model(payload: type[EventPayload]) -> type[BaseModel]:
    """``Event[payload]``: the envelope as :func:`metalbus.shared.events.new_event` builds it."""
    model: type[BaseModel] = Event[payload]  # type: ignore[valid-type]
    return model


def _schemas(
    models: Iterable[type[BaseModel]],
) -> tuple[dict[type[BaseModel], str], dict[str, Any]]:
    """JSON schemas of ``models``: each model's ``$ref``, and every definition by name.

    References point into ``#/components/schemas`` so the definitions can live there.
    """
    unique = list(dict.fromkeys(models))
    mode: JsonSchemaMode = "validation"  # what receivers check messages against
    key_map, top = models_json_schema([(m, mode) for m in unique], ref_template=SCHEMA_REF)
    refs = {model: str(key_map[(model, mode)]["$ref"]) for model in unique}
    return refs, dict(top.get("$defs", {}))


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[1]


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": _pointer(*parts)}


def _add(mapping: dict[str, Any], key: str, value: Any) -> None:
    if key in mapping:
        raise ValueError(f"{key!r} would be defined twice in the AsyncAPI document")
    mapping[key] = value


def _sorted(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: mapping[k] for k in sorted(mapping)}


def _summary(model: type[BaseModel]) -> str:
    # Docstrings use reST literals; the document's text is CommonMark.
    return (model.__doc__ or model.__name__).strip().splitlines()[0].replace("``", "`")


def _event_message(
    type_: str, model: type[EventPayload], envelope: dict[str, Any]
) -> dict[str, Any]:
    props = {name: dict(schema) for name, schema in envelope["properties"].items()}
    props["type"]["const"] = type_
    props["source"]["examples"] = [subjects.event_source(model.event_service)]
    for name, text in ENVELOPE_ATTRIBUTES.items():
        if name in props:
            props[name]["description"] = text
    payload = {
        **envelope,
        "title": f"{type_} envelope",
        "description": f"CloudEvents 1.0 envelope; `data` is a {model.__name__}.",
        "properties": props,
        # Event.to_bytes() writes every attribute (subject as null when unset).
        "required": list(props),
    }
    return {
        "name": type_,
        "title": f"{model.event_entity} {model.event_name} (v{model.event_version})",
        "summary": _summary(model),
        "contentType": EVENT_CONTENT_TYPE,
        "headers": {
            "type": "object",
            "properties": {
                MSG_ID_HEADER: {
                    "type": "string",
                    "description": "The event id: JetStream drops a re-send with the same id "
                    "inside the stream's duplicate window.",
                },
                **TRACE_HEADERS,
            },
            "required": [MSG_ID_HEADER],
        },
        "payload": payload,
        "tags": [{"name": model.event_service}],
    }


def _event_channel(subject: str, service: str, types: Sequence[str]) -> dict[str, Any]:
    return {
        "address": subject,
        "title": subject.removeprefix(f"{subjects.ROOT}.evt."),
        "description": f"Events of the {service} service, kept in the JetStream stream "
        f"`{subjects.stream_name(service)}` (subjects `{subjects.service_events(service)}`).",
        "messages": {t: _ref("components", "messages", t) for t in types},
        "x-metalbus-stream": subjects.stream_name(service),
    }


def _event_operation(
    subject: str, model: type[EventPayload], types: Sequence[str]
) -> dict[str, Any]:
    return {
        "action": "send",
        "channel": _ref("channels", subject),
        "title": f"{model.event_service} publishes {model.event_entity} {model.event_name}",
        "summary": _summary(model),
        "description": f"The {model.event_service} service stages the event in its "
        "transactional outbox with the state change it records, and the outbox relay publishes "
        "it (facts not tied to a database change go out directly with `Bus.publish`), both "
        f"with `{MSG_ID_HEADER}` = event id. Consumers use durable pull "
        "consumers with explicit acks and apply each event id once.",
        "messages": [_ref("channels", subject, "messages", t) for t in types],
        "tags": [{"name": model.event_service}],
    }


def _command_message(
    model: type[BaseModel], refs: Mapping[type[BaseModel], str], *, request: bool
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": model.__name__,
        "title": f"{model.__name__} ({'request' if request else 'reply'})",
        "summary": _summary(model),
        "contentType": "application/json",
        "payload": {"$ref": refs[model]},
    }
    if request:
        message["headers"] = {"type": "object", "properties": dict(TRACE_HEADERS)}
    return message


def _request_channel(command: Command[Any, Any], message: str) -> dict[str, Any]:
    return {
        "address": command.subject,
        "title": f"{command.service} {command.action}",
        "description": f"Requests to the {command.service} service's `{command.action}` command.",
        "messages": {"request": _ref("components", "messages", message)},
    }


def _reply_channel(command: Command[Any, Any], message: str) -> dict[str, Any]:
    return {
        "address": None,
        "title": f"reply to {command.service} {command.action}",
        "description": "The requester's inbox: the reply subject NATS sets on the request "
        "(`_INBOX_<service>.<id>`), so the address is only known at run time.",
        "messages": {
            "response": _ref("components", "messages", message),
            "error": _ref("components", "messages", ERROR_MESSAGE),
        },
    }


def _command_operation(command: Command[Any, Any], reply_id: str) -> dict[str, Any]:
    group = subjects.queue_group(command.service)
    return {
        "action": "receive",
        "channel": _ref("channels", command.subject),
        "title": f"{command.service} serves {command.action}",
        "summary": command.description or f"{command.action} of the {command.service} service",
        "description": f"Served by every replica of the {command.service} service in the queue "
        f"group `{group}` (one replica answers each request). The caller waits "
        f"{command.timeout:g} s by default: no responders becomes `service_unavailable`, "
        "silence becomes `timeout`, both raised on the caller's side.",
        "messages": [_ref("channels", command.subject, "messages", "request")],
        "reply": {
            "channel": _ref("channels", reply_id),
            "messages": [
                _ref("channels", reply_id, "messages", "response"),
                _ref("channels", reply_id, "messages", "error"),
            ],
        },
        "bindings": {"nats": {"queue": group, "bindingVersion": NATS_BINDING_VERSION}},
        "tags": [{"name": command.service}],
        "x-metalbus-timeout-s": command.timeout,
    }


def _error_message() -> dict[str, Any]:
    errors = sorted(ERRORS_BY_CODE.values(), key=lambda e: e.code)
    table = "\n".join(
        f"| `{e.code}` | {e.http_status} | {'yes' if e.retryable else 'no'} |" for e in errors
    )
    return {
        "name": MetalbusError.__name__,
        "title": "error reply",
        "summary": "A typed error: the command failed and nothing is returned.",
        "description": "Sent with nats.micro's `respond_error`: the headers carry the HTTP "
        "status and the message, the body is `MetalbusError.to_dict()`. The caller rebuilds the "
        "typed error from `code` (unknown codes become `internal_error`).\n\n"
        "| code | HTTP status | retryable |\n|---|---|---|\n" + table,
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "properties": {
                ERROR_CODE_HEADER: {
                    "type": "string",
                    "description": "The error's HTTP status, as text.",
                    "enum": sorted({str(e.http_status) for e in errors}),
                },
                ERROR_HEADER: {"type": "string", "description": "The error's message."},
            },
            "required": [ERROR_CODE_HEADER, ERROR_HEADER],
        },
        "payload": {
            "title": "MetalbusError",
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "enum": [e.code for e in errors],
                    "description": "Stable error code; clients switch on it, never on the message.",
                },
                "message": {"type": "string", "description": "One readable sentence."},
                "field": {
                    "type": "string",
                    "description": "The input field at fault, as a dotted path.",
                },
                "details": {
                    "type": "object",
                    "description": "Extra machine-readable facts (never secrets).",
                },
            },
            "required": ["code", "message"],
            "additionalProperties": False,
        },
    }


# -- YAML --------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$/-]*$")
# Words YAML 1.1 readers (PyYAML) turn into booleans or null when left unquoted.
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null", "~"})


def render_yaml(value: Any) -> str:
    """Block-style YAML for plain data, deterministic (mapping order is kept).

    Strings are always double-quoted with escapes only (the output is ASCII), keys are
    quoted when YAML could read them as anything but a string; JSON's quoting is a subset of
    YAML's, so any YAML 1.1 or 1.2 reader gets the same data back.

    Args:
        value: dicts with string keys, lists, strings, numbers, booleans and None.

    Returns:
        The YAML text, ending in a newline.

    Raises:
        TypeError: something else (a non-string key, an object).
    """
    lines: list[str] = []
    _emit(value, 0, lines)
    return "\n".join(lines) + "\n"


def _nested(value: Any) -> bool:
    return isinstance(value, dict | list) and len(value) > 0


def _emit(value: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict) and value:
        for key, item in value.items():
            if _nested(item):
                lines.append(f"{pad}{_key(key)}:")
                _emit(item, indent + 2, lines)
            else:
                lines.append(f"{pad}{_key(key)}: {_scalar(item)}")
    elif isinstance(value, list) and value:
        for item in value:
            if _nested(item):
                block: list[str] = []
                _emit(item, indent + 2, block)
                lines.append(f"{pad}- {block[0][indent + 2 :]}")
                lines.extend(block[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(value))


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"mapping keys must be strings, not {type(key).__name__}")
    if _PLAIN_KEY.match(key) and key.lower() not in _YAML_WORDS:
        return key
    return _quote(key)


def _quote(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    # Escape non-ASCII ourselves: PyYAML cannot join JSON's surrogate pairs, YAML's \U can.
    return "".join(
        c if ord(c) < 0x7F else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
        for c in quoted
    )


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        # YAML 1.1 reads 1e+20 as a string; 1.0e+20 is a float everywhere.
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, dict | list) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def generate() -> str:
    """The complete ``docs/asyncapi.yaml``: a comment header and the document."""
    return HEADER_COMMENT + render_yaml(build_document())


def main() -> None:
    """Print the document to stdout (``make asyncapi`` redirects it into docs/)."""
    sys.stdout.write(generate())


if __name__ == "__main__":
    main()
