"""``/api/v1/pods`` and ``/api/v1/vms``: through the api, over NATS, into compose (and ipam)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from metalbus.api.app import create_app
from metalbus.api.settings import ApiSettings
from tests.compose.conftest import KVM, ComposeUnderTest
from tests.conftest import DatabaseFactory
from tests.helpers import InLoopServer, NatsServer

TOKEN = "mb_000000000001.admin-secret-for-tests-only-0123456789"
V1 = "/api/v1"


@pytest.fixture
async def http(
    compose: ComposeUnderTest, nats_server: NatsServer, db_factory: DatabaseFactory
) -> AsyncIterator[httpx.AsyncClient]:
    url, schema = db_factory()
    settings = ApiSettings(
        nats_url=nats_server.url, database_url=url, database_schema=schema, port=0,
        bootstrap_token=TOKEN,
    )  # fmt: skip
    async with (
        InLoopServer(create_app(settings)) as base,
        httpx.AsyncClient(
            base_url=base + V1, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client,
    ):
        yield client


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def test_pods_and_vms_over_http(compose: ComposeUnderTest, http: httpx.AsyncClient) -> None:
    await compose.network(untagged_dhcp=False, maas_dhcp=True)
    pod = await ok(await http.post("/pods", json={"uri": KVM, "name": "kvm1"}), 201)
    assert pod["name"] == "kvm1" and pod["cores"] == 8
    listed = await ok(await http.get("/pods"))
    assert [p["id"] for p in listed["items"]] == [pod["id"]]
    changed = await ok(
        await http.patch(f"/pods/{pod['id']}", json={"default_macvlan_mode": "vepa"})
    )
    assert changed["default_macvlan_mode"] == "vepa"
    result = await ok(
        await http.post(
            f"/pods/{pod['id']}/compose", json={"hostname": "web1", "storage": "root:4,data:2(ssd)"}
        ),
        201,
    )
    vm = result["vms"][0]
    assert vm["name"] == "web1" and [d["pool"] for d in vm["disks"]] == ["default", "ssd"]
    xml = await ok(await http.get(f"/vms/{vm['id']}/xml"))
    assert '<source network="maas"' in xml["xml"] or "<source network='maas'" in xml["xml"]
    assert (await ok(await http.get(f"/vms/{vm['id']}")))["uuid"] == vm["uuid"]
    await ok(await http.post(f"/pods/{pod['id']}/refresh"))
    await ok(await http.delete(f"/vms/{vm['id']}"))
    await ok(await http.get(f"/vms/{vm['id']}"), 404)
    await ok(await http.delete(f"/pods/{pod['id']}", params={"decompose": "true"}), 204)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        (
            "POST",
            "/pods",
            {"uri": KVM, "cpu_over_commit_ratio": 0},
            422,
            "body.cpu_over_commit_ratio",
        ),
        ("POST", "/pods/{id}/compose", {"storage": "root:x"}, 422, "body.storage"),
        ("POST", "/pods/{id}/compose", {"interfaces": "eth0:wat=1"}, 422, "body.interfaces"),
        ("POST", "/pods/{id}/compose", {"cores": 64}, 409, "body.cores"),
        ("POST", "/pods/999/compose", {}, 404, "path.id"),
        ("PATCH", "/pods/{id}", {"default_storage_pool": "nope"}, 422, "body.default_storage_pool"),
        ("GET", "/vms/999", None, 404, "path.id"),
    ],
)
async def test_faults_name_the_field_where_the_client_put_it(
    compose: ComposeUnderTest,
    http: httpx.AsyncClient,
    method: str,
    path: str,
    body: Any,
    status: int,
    field: str,
) -> None:
    pod = await ok(await http.post("/pods", json={"uri": KVM}), 201)
    response = await http.request(method, path.format(id=pod["id"]), json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field
