"""Every route the client can call exists in the API's OpenAPI document, with the query
parameters, headers and body fields the client sends."""

from __future__ import annotations

from typing import Any

import pytest

from metalbus.api.app import create_app
from metalbus.api.settings import ApiSettings
from metalbus.client import Call, ops
from metalbus.client.calls import Route


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(ApiSettings(database_url="sqlite:///:memory:")).openapi()


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    for key in ("anyOf", "allOf"):  # an optional body: the object among the choices
        for choice in schema.get(key, []):
            found = _resolve(document, choice)
            if found.get("properties"):
                return found
    return schema


ROUTES = [(name, route) for name, r in ops.all_resources().items() for route in r.routes()]


@pytest.mark.parametrize(
    ("resource", "route"), ROUTES, ids=[f"{r.method} {r.path}" for _, r in ROUTES]
)
def test_route_is_in_the_openapi_document(
    document: dict[str, Any], resource: str, route: Route
) -> None:
    operation = document["paths"].get(route.path, {}).get(route.method.lower())
    assert operation is not None, f"{resource}: {route.method} {route.path} is not in the API"
    parameters = {(p["in"], p["name"].lower()) for p in operation.get("parameters", [])}
    for name in route.query:
        assert ("query", name.lower()) in parameters, f"{route.path} takes no ?{name}"
    for name in route.headers:
        assert ("header", name.lower()) in parameters, f"{route.path} takes no {name} header"
    for name in (n for n in route.path.split("{")[1:]):
        assert ("path", name.split("}")[0]) in parameters
    fields = route.body_fields()
    if fields:
        content = operation["requestBody"]["content"]["application/json"]["schema"]
        properties = _resolve(document, content).get("properties", {})
        assert set(fields) <= set(properties), f"{route.path}: {set(fields) - set(properties)}"
    else:
        required = operation.get("requestBody", {}).get("required", False)
        assert not required, f"{route.path} needs a body the client does not send"


def test_calls_send_only_what_their_route_declares() -> None:
    with pytest.raises(TypeError, match="no query parameter"):
        ops.fabrics.list(colour="blue")
    call: Call[Any] = ops.subnets.list(vlan_id=3, after=0, limit=10, contains=None)
    assert call.params() == [("vlan_id", "3"), ("after", "0"), ("limit", "10")]
    assert ops.pods.delete(4, decompose=True).params() == [("decompose", "true")]
    assert ops.power.on(2).url == "/api/v1/power/bmcs/2/on"
