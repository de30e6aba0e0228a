"""The wire contract: subjects, event envelopes and the error hierarchy."""

from __future__ import annotations

import pytest

from metalbus.shared import subjects
from metalbus.shared.contract.api import Role, TokenCreated
from metalbus.shared.errors import (
    ERRORS_BY_CODE,
    Conflict,
    InternalError,
    MetalbusError,
    ValidationFailed,
)
from metalbus.shared.events import EVENT_TYPES, decode_event, new_event


def test_subjects_follow_one_scheme() -> None:
    assert subjects.command_subject("ipam", "allocate") == "metalbus.cmd.ipam.allocate"
    assert subjects.event_subject("ipam", "subnet", "created") == "metalbus.evt.ipam.subnet.created"
    assert subjects.event_type("ipam", "subnet", "created") == "io.metalbus.ipam.subnet.created.v1"
    assert (
        subjects.subject_for_type("io.metalbus.ipam.subnet.created.v2")
        == "metalbus.evt.ipam.subnet.created"
    )
    assert subjects.stream_name("boot") == "METALBUS_BOOT"
    assert subjects.queue_group("power") == "metalbus-power"


@pytest.mark.parametrize("token", ["", "Ipam", "a.b", "a b", "*", ">", "1abc"])
def test_subject_tokens_are_checked(token: str) -> None:
    with pytest.raises(ValueError):
        subjects.command_subject(token, "x")
    with pytest.raises(ValueError):
        subjects.event_subject("ipam", token, "created")


@pytest.mark.parametrize(
    "bad", ["io.metalbus.ipam.subnet.created", "org.other.ipam.subnet.created.v1", "x"]
)
def test_subject_for_type_rejects_foreign_types(bad: str) -> None:
    with pytest.raises(ValueError):
        subjects.subject_for_type(bad)


def test_event_round_trip_keeps_type_and_payload() -> None:
    event = new_event(TokenCreated(token_id="abc", name="ci", role=Role.OPERATOR), subject="abc")
    assert event.type == "io.metalbus.api.token.created.v1"
    assert event.source == "/metalbus/api"
    assert event.specversion == "1.0"
    assert event.nats_subject == "metalbus.evt.api.token.created"
    back = decode_event(event.to_bytes())
    assert back.id == event.id
    assert isinstance(back.data, TokenCreated)
    assert back.data.role is Role.OPERATOR
    assert EVENT_TYPES[event.type] is TokenCreated


def test_decode_rejects_bad_events_with_a_field() -> None:
    with pytest.raises(ValidationFailed):
        decode_event(b"not json")
    unknown = new_event(TokenCreated(token_id="a", name="n", role=Role.ADMIN)).model_dump(
        mode="json"
    )
    unknown["type"] = "io.metalbus.api.token.exploded.v1"
    import json

    with pytest.raises(ValidationFailed) as info:
        decode_event(json.dumps(unknown).encode())
    assert info.value.field == "type"
    wrong = new_event(TokenCreated(token_id="a", name="n", role=Role.ADMIN)).model_dump(mode="json")
    wrong["data"]["role"] = "superuser"
    with pytest.raises(ValidationFailed) as info:
        decode_event(json.dumps(wrong).encode())
    assert info.value.field == "data.role"


def test_errors_round_trip_by_code() -> None:
    err = Conflict("10.0.0.5 is taken", field="ip", details={"owner": "m1"})
    back = MetalbusError.from_dict(err.to_dict())
    assert type(back) is Conflict
    assert (back.message, back.field, back.details) == ("10.0.0.5 is taken", "ip", {"owner": "m1"})
    assert type(MetalbusError.from_dict({"code": "no_such_code", "message": "x"})) is InternalError
    codes = [cls.code for cls in ERRORS_BY_CODE.values()]
    assert len(codes) == len(set(codes))
    assert all(400 <= cls.http_status < 600 for cls in ERRORS_BY_CODE.values())
