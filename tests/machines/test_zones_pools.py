"""Zones and resource pools: first-class objects machines belong to and allocation asks for."""

from __future__ import annotations

import pytest

from tests.machines.conftest import Stack, ok


@pytest.mark.parametrize("kind", ["zones", "pools"])
async def test_crud_with_a_default_that_stays(stack: Stack, kind: str) -> None:
    await stack.start_boot()
    await stack.start_api()
    http = stack.http
    [default] = await ok(await http.get(f"/{kind}"))
    assert default["name"] == "default" and default["id"] == 1
    made = await ok(
        await http.post(f"/{kind}", json={"name": "rack-a", "description": "row 1"}), 201
    )
    assert made["id"] == 2
    twice = await http.post(f"/{kind}", json={"name": "rack-a"})
    assert twice.status_code == 409 and twice.json()["field"] == "body.name"
    bad = await http.post(f"/{kind}", json={"name": "no spaces"})
    assert bad.status_code == 422 and bad.json()["field"] == "body.name"
    changed = await ok(await http.patch(f"/{kind}/{made['id']}", json={"name": "rack-b"}))
    assert changed["name"] == "rack-b" and changed["description"] == "row 1"
    assert (await http.patch(f"/{kind}/1", json={"name": "other"})).status_code == 409
    assert (await http.delete(f"/{kind}/1")).status_code == 409
    assert (await http.get(f"/{kind}/99")).status_code == 404

    # A zone or pool holding a machine stays; allocation asks for it by name.
    field = kind[:-1]
    body = {"interfaces": [{"name": "eth0", "mac": "52:54:00:00:00:07"}], field: "rack-b"}
    sid = (await ok(await http.post("/machines", json=body), 201))["system_id"]
    assert (await stack.machine(sid))[field] == "rack-b"
    held = await http.delete(f"/{kind}/{made['id']}")
    assert held.status_code == 409 and "holds machines" in held.json()["detail"]
    listed = await ok(await http.get("/machines", params={field: "rack-b"}))
    assert [m["system_id"] for m in listed] == [sid]
    await ok(await http.post(f"/machines/{sid}/mark-broken"), 202)
    await ok(await http.post(f"/machines/{sid}/mark-fixed"), 202)  # Ready (no hardware known)
    elsewhere = await http.post("/machines/allocate", json={field: "default", "compose": False})
    assert elsewhere.status_code == 409
    here = await ok(await http.post("/machines/allocate", json={field: "rack-b", "compose": False}))
    assert here["system_id"] == sid
    unknown = await http.post("/machines/allocate", json={field: "nowhere"})
    assert unknown.status_code == 422 and unknown.json()["field"] == f"body.{field}"
    await ok(await http.post(f"/machines/{sid}/release"), 202)
    await stack.wait_machine(sid, "the release", status="ready", flow=None)
    assert (await http.delete(f"/machines/{sid}")).status_code == 204
    assert (await http.delete(f"/{kind}/{made['id']}")).status_code == 204
    assert [z["name"] for z in await ok(await http.get(f"/{kind}"))] == ["default"]
