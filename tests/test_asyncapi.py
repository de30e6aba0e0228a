"""The AsyncAPI document: committed copy up to date, complete, and a valid description.

No AsyncAPI meta-schema is downloaded: the checks here are the ones that matter for us
and can run offline - every event and command is there, every ``$ref`` resolves, each
operation's messages belong to its channel (an AsyncAPI 3 rule), every schema is a valid
JSON schema, and real messages built by the shared code validate against their schemas.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT7

import metalbus.shared.contract  # noqa: F401  (registers every event type)
from metalbus.shared import asyncapi, subjects
from metalbus.shared.commands import (
    Command,
    Empty,
    Pong,
    ReadinessCheck,
    ServiceStatus,
    ping,
    status,
)
from metalbus.shared.contract import devices as dv
from metalbus.shared.contract import machines as m
from metalbus.shared.contract.api import Role, TokenCreated, TokenRevoked
from metalbus.shared.errors import ERRORS_BY_CODE
from metalbus.shared.events import EVENT_TYPES, EventPayload, new_event

ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = ROOT / "docs" / "asyncapi.yaml"
DOC_URI = "urn:metalbus:asyncapi"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi.build_document()


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _validator(doc: dict[str, Any], pointer: str) -> jsonschema.Draft7Validator:
    """A validator for the schema at ``pointer``, resolving its references in the document.

    AsyncAPI's default schema format is a superset of JSON Schema draft-07.
    """
    registry: Registry[Any] = Registry().with_resource(DOC_URI, DRAFT7.create_resource(doc))
    return jsonschema.Draft7Validator(
        {"$ref": f"{DOC_URI}{pointer}"},
        registry=registry,
        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
    )


def _message_for(doc: dict[str, Any], channel: str, key: str) -> str:
    """Pointer of the component message a channel's message entry refers to."""
    return str(doc["channels"][channel]["messages"][key]["$ref"])


# -- (a) the committed document is the generator's output ----------------------------------


def test_committed_document_is_current() -> None:
    assert DOC_PATH.exists(), "docs/asyncapi.yaml is missing: run make asyncapi"
    assert DOC_PATH.read_text() == asyncapi.generate(), (
        "docs/asyncapi.yaml is out of date with the shared models: run make asyncapi"
    )


def test_module_entry_point_prints_the_document() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "metalbus.shared.asyncapi"],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    assert out.stdout == asyncapi.generate()


def test_output_is_deterministic() -> None:
    assert asyncapi.generate() == asyncapi.generate()


# -- (b) every event type has its channel --------------------------------------------------


def _contract_event_types() -> dict[str, type[EventPayload]]:
    """Registered event types of the contract (other test modules register fakes too)."""
    return {
        t: cls
        for t, cls in EVENT_TYPES.items()
        if cls.__module__.startswith("metalbus.shared.contract.")
    }


def test_every_event_type_has_a_channel_on_its_subject(doc: dict[str, Any]) -> None:
    contract_types = _contract_event_types()
    assert contract_types, "no event types registered"
    assert contract_types == asyncapi.contract_events()
    for type_, cls in EVENT_TYPES.items():
        if type_ not in contract_types:  # only tests may register events outside the contract
            assert not cls.__module__.startswith("metalbus."), f"{type_} is outside the contract"
    by_address = {c["address"]: (cid, c) for cid, c in doc["channels"].items()}
    for type_, model in contract_types.items():
        subject = subjects.subject_for_type(type_)
        assert subject == model.subject()
        assert subject in by_address, f"no channel for {type_} on {subject}"
        channel_id, channel = by_address[subject]
        assert channel["messages"][type_] == {"$ref": f"#/components/messages/{type_}"}
        message = doc["components"]["messages"][type_]
        assert message["name"] == type_
        assert message["payload"]["properties"]["type"]["const"] == type_
        assert message["payload"]["properties"]["data"] == {
            "$ref": f"#/components/schemas/{model.__name__}"
        }
        operation = doc["operations"][f"publish.{channel_id}"]
        assert operation["action"] == "send"
        assert operation["tags"] == [{"name": model.event_service}]
        assert channel["x-metalbus-stream"] == subjects.stream_name(model.event_service)


def test_every_service_answers_ping_and_status(doc: dict[str, Any]) -> None:
    for service in subjects.SERVICES:
        for command in (ping(service), status(service)):
            channel = doc["channels"][command.subject]
            assert channel["address"] == command.subject
            operation = doc["operations"][f"serve.{command.subject}"]
            assert operation["action"] == "receive"
            assert operation["bindings"]["nats"]["queue"] == subjects.queue_group(service)
            reply = doc["channels"][_resolve_id(operation["reply"]["channel"]["$ref"])]
            assert reply["address"] is None  # the requester's inbox
            assert set(reply["messages"]) == {"response", "error"}
            response = _resolve(doc, reply["messages"]["response"]["$ref"])
            assert response["payload"] == {
                "$ref": f"#/components/schemas/{command.response.__name__}"
            }


def _resolve_id(ref: str) -> str:
    prefix = "#/channels/"
    assert ref.startswith(prefix)
    return ref[len(prefix) :]


def test_error_reply_documents_every_code(doc: dict[str, Any]) -> None:
    error = doc["components"]["messages"][asyncapi.ERROR_MESSAGE]
    assert error["payload"]["properties"]["code"]["enum"] == sorted(ERRORS_BY_CODE)
    statuses = error["headers"]["properties"]["Nats-Service-Error-Code"]["enum"]
    assert statuses == sorted({str(e.http_status) for e in ERRORS_BY_CODE.values()})
    for code, cls in ERRORS_BY_CODE.items():
        assert f"| `{code}` | {cls.http_status} |" in error["description"]


# -- (c) it is YAML, AsyncAPI 3, and internally consistent ---------------------------------


def test_document_parses_as_asyncapi_3(doc: dict[str, Any]) -> None:
    loaded = yaml.safe_load(DOC_PATH.read_text())
    assert isinstance(loaded, dict)
    assert str(loaded["asyncapi"]).startswith("3.")
    assert loaded == doc  # the emitter loses nothing
    assert {"info", "channels", "operations", "components"} <= set(loaded)


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    refs = list(_refs(doc))
    assert refs
    for ref in refs:
        _resolve(doc, ref)


def test_operation_messages_belong_to_their_channels(doc: dict[str, Any]) -> None:
    # AsyncAPI 3: an operation's messages MUST be a subset of its channel's messages
    # (and a reply's of the reply channel's), referenced through the channel.
    for op_id, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), op_id
        pairs = [(operation["channel"], operation["messages"])]
        if "reply" in operation:
            pairs.append((operation["reply"]["channel"], operation["reply"]["messages"]))
        for channel_ref, messages in pairs:
            assert messages, f"{op_id} has no messages"
            for message in messages:
                assert message["$ref"].startswith(channel_ref["$ref"] + "/messages/"), op_id


def test_ids_and_extensions_are_well_formed(doc: dict[str, Any]) -> None:
    component_key = re.compile(r"^[\w\d.\-_]+$")  # AsyncAPI 3 components key pattern
    for section in doc["components"].values():
        for key in section:
            assert component_key.match(key), key
    for section in ("channels", "operations"):
        assert list(doc[section]) == sorted(doc[section]), f"{section} are not sorted"


def test_every_schema_is_a_valid_json_schema(doc: dict[str, Any]) -> None:
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft7Validator.check_schema(schema)
        assert schema.get("title"), name
    for message in doc["components"]["messages"].values():
        jsonschema.Draft7Validator.check_schema(message["payload"])
        if "headers" in message:
            jsonschema.Draft7Validator.check_schema(message["headers"])
            assert message["headers"]["type"] == "object"


# -- real messages validate against the document --------------------------------------------

_MACHINE = m.MachineInfo(
    system_id="4y3h7n", hostname="node1", domain="maas", status=m.MachineStatus.NEW,
    architecture="amd64/generic", cores=4, memory=8192, storage=0, zone="default",
    pool="default", tags=[], owner=None, macs=["52:54:00:00:00:01"], power_driver="ipmi",
    pod_id=None, vm_id=None,
)  # fmt: skip
_NAMED = m.NamedObject(id=1, name="default", description="")
_DEVICE = dv.DeviceInfo(
    system_id="8k2p4q", hostname="printer", domain="maas", description="printer",
    parent="4y3h7n", zone="default", tags=[],
    addresses=[dv.DeviceAddress(mac="52:54:00:00:00:02", ip_assignment=dv.IpAssignment.STATIC,
                                ip="10.0.0.9")],
)  # fmt: skip

EXAMPLE_PAYLOADS: list[EventPayload] = [
    TokenCreated(token_id="0123456789ab", name="ci", role=Role.OPERATOR),
    TokenCreated(
        token_id="0123456789ab",
        name="ci",
        role=Role.ADMIN,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        created_by="ba9876543210",
    ),
    TokenRevoked(token_id="0123456789ab", revoked_by=None),
    *(event(machine=_MACHINE) for event in (m.MachineUpdated, m.MachineDeleted)),
    m.MachineCreated(machine=_MACHINE, cause="enlisted"),
    m.MachineStatusChanged(
        system_id="4y3h7n",
        previous=m.MachineStatus.NEW,
        status=m.MachineStatus.COMMISSIONING,
        action="commission",
    ),
    m.MachineFlowStep(system_id="4y3h7n", flow="commission", step="power_on", detail="on"),
    m.MachineBootProgress(
        system_id="4y3h7n",
        status=m.MachineStatus.DEPLOYING,
        progress="kernel fetched",
        filename="ephemeral/amd64/vmlinuz",
        via="tftp",
        mac="52:54:00:00:00:01",
    ),
    *(e(zone=_NAMED) for e in (m.ZoneCreated, m.ZoneUpdated, m.ZoneDeleted)),
    *(e(pool=_NAMED) for e in (m.PoolCreated, m.PoolUpdated, m.PoolDeleted)),
    dv.DeviceCreated(device=_DEVICE, cause="discovered"),
    *(e(device=_DEVICE) for e in (dv.DeviceUpdated, dv.DeviceDeleted)),
]


@pytest.mark.parametrize("payload", EXAMPLE_PAYLOADS, ids=lambda p: type(p).__name__)
def test_real_events_validate(doc: dict[str, Any], payload: EventPayload) -> None:
    event = new_event(payload, subject="0123456789ab")
    pointer = f"#/components/messages/{event.type}/payload"
    validator = _validator(doc, pointer)
    validator.validate(json.loads(event.to_bytes()))
    validator.validate(json.loads(new_event(payload).to_bytes()))  # subject: null
    wrong_type = {**json.loads(event.to_bytes()), "type": "io.metalbus.api.other.thing.v1"}
    assert not validator.is_valid(wrong_type)
    extra_data = json.loads(event.to_bytes())
    extra_data["data"]["secret"] = "must not be here"
    assert not validator.is_valid(extra_data)  # payloads forbid unknown fields
    headers = _validator(doc, f"#/components/messages/{event.type}/headers")
    headers.validate({"Nats-Msg-Id": event.id})
    assert not headers.is_valid({})


def test_example_events_cover_every_api_event() -> None:
    documented = {p.event_type() for p in EXAMPLE_PAYLOADS}
    assert documented == {t for t in _contract_event_types() if t.startswith("io.metalbus.api.")}


def _reply_pointer(doc: dict[str, Any], command: Command[Any, Any], key: str) -> str:
    return _message_for(doc, f"{command.subject}.reply", key) + "/payload"


def test_real_command_messages_validate(doc: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    pong = Pong(service="ipam", instance="host-1", version="0.1.0", time=now)
    report = ServiceStatus(
        service="ipam",
        instance="host-1",
        version="0.1.0",
        started_at=now,
        ready=False,
        checks=[
            ReadinessCheck(name="bus", ok=True),
            ReadinessCheck(name="db", ok=False, detail="down"),
        ],
    )
    for command, answer in ((ping("ipam"), pong), (status("ipam"), report)):
        request = _message_for(doc, command.subject, "request") + "/payload"
        _validator(doc, request).validate(json.loads(Empty().model_dump_json()))
        response = _validator(doc, _reply_pointer(doc, command, "response"))
        response.validate(json.loads(answer.model_dump_json()))
    bad = _validator(doc, _reply_pointer(doc, status("ipam"), "response"))
    assert not bad.is_valid({"service": "ipam"})


@pytest.mark.parametrize("code", sorted(ERRORS_BY_CODE))
def test_error_replies_validate(doc: dict[str, Any], code: str) -> None:
    cls = ERRORS_BY_CODE[code]
    error_ref = f"#/components/messages/{asyncapi.ERROR_MESSAGE}"
    body = _validator(doc, f"{error_ref}/payload")
    body.validate(cls("it failed").to_dict())
    body.validate(cls("it failed", field="body.cidr", details={"cidr": "10.0.0.0/8"}).to_dict())
    assert not body.is_valid({"code": "no_such_code", "message": "x"})
    # What nats.micro's respond_error puts in the headers (see Bus._handle).
    headers = _validator(doc, f"{error_ref}/headers")
    headers.validate(
        {"Nats-Service-Error-Code": str(cls.http_status), "Nats-Service-Error": "it failed"}
    )


# -- the generator's own rules ---------------------------------------------------------------


def test_two_commands_on_one_subject_are_refused() -> None:
    clash = Command("ipam", "ping", Empty, Empty)
    with pytest.raises(ValueError, match=r"metalbus\.cmd\.ipam\.ping"):
        asyncapi.build_document(commands=[ping("ipam"), clash])


def test_versions_of_an_event_share_one_channel() -> None:
    class V1(EventPayload):
        n: int

    class V2(EventPayload):
        n: int
        m: int

    for cls, version in ((V1, 1), (V2, 2)):
        cls.event_service, cls.event_entity, cls.event_name = "ipam", "thing", "made"
        cls.event_version = version
    events: dict[str, type[EventPayload]] = {V1.event_type(): V1, V2.event_type(): V2}
    built = asyncapi.build_document(events=events, commands=[])
    channel = built["channels"]["metalbus.evt.ipam.thing.made"]
    assert sorted(channel["messages"]) == sorted(events)
    operation = built["operations"]["publish.metalbus.evt.ipam.thing.made"]
    assert len(operation["messages"]) == 2


TRICKY: dict[str, Any] = {
    "on": "yes",
    "no": ["off", "null", "~", "true", "1.0", "0x1F", "2001-12-14"],
    "404": 404,
    "": "",
    "a: b": "c # not a comment",
    "-x": "- not a list",
    "#hash": "'single' \"double\" \\back\\slash",
    "x-ext.v1/$ref": {"nested": [[1, 2], [], {}, [{"a": None, "b": False}]]},
    "lines": "one\ntwo\n\tthree\r\n",
    "unicode": "caf\u00e9 \u2028 \U0001f600 \x85 \x7f",
    "floats": [1.5, -0.25, 1e100, 1e-7, 0.0, float("inf"), float("-inf")],
    "ints": [0, -1, 10**20],
    "empty": {},
}


def test_yaml_emitter_round_trips_what_yaml_could_misread() -> None:
    assert yaml.safe_load(asyncapi.render_yaml(TRICKY)) == TRICKY
    assert asyncapi.render_yaml(TRICKY).isascii()


def test_yaml_emitter_refuses_what_it_cannot_write() -> None:
    with pytest.raises(TypeError):
        asyncapi.render_yaml({1: "x"})
    with pytest.raises(TypeError):
        asyncapi.render_yaml({"x": object()})
