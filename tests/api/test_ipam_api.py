"""The ipam routes of the HTTP API: through the api, over NATS, into a real ipam service.

Every test runs on SQLite and on PostgreSQL (the ``api`` fixture starts both services).
Bad input must answer problem+json naming the field where the client put it (``body.cidr``,
``path.id``, ``query.limit``) and change nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.conftest import ApiUnderTest

PROBLEM = "application/problem+json"
V1 = "/api/v1"
MISSING = 999_999
COLLECTIONS = (
    "/fabrics",
    "/vlans",
    "/spaces",
    "/subnets",
    "/static-routes",
    "/ipranges",
    "/ipaddresses",
)


async def call(
    api: ApiUnderTest,
    method: str,
    path: str,
    body: Any = None,
    *,
    expect: int = 200,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    """One request as the admin (or ``token``); asserts the status and returns the JSON."""
    auth = api.auth(token) if token else api.auth()
    response = await api.client.request(
        method, V1 + path, json=body, params=params, headers={**auth, **(headers or {})}
    )
    assert response.status_code == expect, (
        f"{method} {path}: {response.status_code} {response.text}"
    )
    return response.json() if response.content else None


async def problem(
    api: ApiUnderTest,
    method: str,
    path: str,
    body: Any = None,
    *,
    status: int | tuple[int, ...],
    field: str | tuple[str, ...],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A request that must fail with problem+json naming ``field`` (or one of them)."""
    response = await api.client.request(
        method, V1 + path, json=body, headers={**api.auth(), **(headers or {})}
    )
    statuses = status if isinstance(status, tuple) else (status,)
    fields = field if isinstance(field, tuple) else (field,)
    assert response.status_code in statuses, f"{method} {path}: {response.text}"
    assert response.headers["content-type"] == PROBLEM
    answer: dict[str, Any] = response.json()
    assert answer["status"] == response.status_code
    assert answer.get("field") in fields, answer
    return answer


async def everything(api: ApiUnderTest) -> dict[str, Any]:
    """Every ipam object the API lists, to show a failed request changed nothing."""
    return {path: await call(api, "GET", f"{path}?limit=1000") for path in COLLECTIONS}


@dataclass
class Net:
    """A small network: a fabric with VLAN 10, an IPv4 and an IPv6 subnet on it, ranges."""

    fabric: int
    vlan: int
    v4: int
    v6: int
    dynamic: int
    address: int


async def build(api: ApiUnderTest) -> Net:
    fabric = await call(api, "POST", "/fabrics", {"name": "dc1"}, expect=201)
    vlan = await call(api, "POST", f"/fabrics/{fabric['id']}/vlans", {"vid": 10}, expect=201)
    v4 = await call(
        api,
        "POST",
        "/subnets",
        {"cidr": "10.0.0.0/24", "vlan_id": vlan["id"], "gateway_ip": "10.0.0.1"},
        expect=201,
    )
    v6 = await call(
        api, "POST", "/subnets", {"cidr": "2001:db8::/64", "vlan_id": vlan["id"]}, expect=201
    )
    dynamic = await call(
        api,
        "POST",
        "/ipranges",
        {
            "subnet_id": v4["id"],
            "type": "dynamic",
            "start_ip": "10.0.0.100",
            "end_ip": "10.0.0.199",
        },
        expect=201,
    )
    address = await call(
        api,
        "POST",
        "/ipaddresses",
        {"subnet_id": v4["id"], "ip": "10.0.0.50", "alloc_type": "user_reserved"},
        expect=201,
    )
    return Net(fabric["id"], vlan["id"], v4["id"], v6["id"], dynamic["id"], address["id"])


# -- CRUD round trips ---------------------------------------------------------------------


async def test_fabric_round_trip(api: ApiUnderTest) -> None:
    fabric = await call(api, "POST", "/fabrics", {"name": "dc1", "description": "one"}, expect=201)
    assert (fabric["name"], fabric["description"]) == ("dc1", "one")
    assert await call(api, "GET", f"/fabrics/{fabric['id']}") == fabric
    listed = await call(api, "GET", "/fabrics")
    assert fabric["id"] in [f["id"] for f in listed["items"]]
    vlan0 = await call(api, "GET", f"/vlans/{fabric['default_vlan_id']}")
    assert (vlan0["fabric_id"], vlan0["vid"]) == (fabric["id"], 0)

    unnamed = await call(api, "POST", "/fabrics", {}, expect=201)
    assert unnamed["name"] == f"fabric-{unnamed['id']}"

    changed = await call(api, "PATCH", f"/fabrics/{fabric['id']}", {"description": "two"})
    assert (changed["name"], changed["description"]) == ("dc1", "two")  # name untouched

    assert await call(api, "DELETE", f"/fabrics/{fabric['id']}", expect=204) is None
    await problem(api, "GET", f"/fabrics/{fabric['id']}", status=404, field="path.id")
    await problem(api, "DELETE", f"/fabrics/{fabric['id']}", status=404, field="path.id")


async def test_space_round_trip(api: ApiUnderTest) -> None:
    space = await call(api, "POST", "/spaces", {"name": "storage"}, expect=201)
    assert await call(api, "GET", f"/spaces/{space['id']}") == space
    changed = await call(api, "PATCH", f"/spaces/{space['id']}", {"description": "ceph"})
    assert (changed["name"], changed["description"]) == ("storage", "ceph")
    renamed = await call(api, "PATCH", f"/spaces/{space['id']}", {"name": "san"})
    assert (renamed["name"], renamed["description"]) == ("san", "ceph")
    await problem(api, "POST", "/spaces", {"name": "san"}, status=409, field="body.name")
    assert await call(api, "DELETE", f"/spaces/{space['id']}", expect=204) is None
    await problem(api, "GET", f"/spaces/{space['id']}", status=404, field="path.id")


async def test_vlan_round_trip(api: ApiUnderTest) -> None:
    fabric = await call(api, "POST", "/fabrics", {}, expect=201)
    space = await call(api, "POST", "/spaces", {"name": "storage"}, expect=201)
    in_path = f"/fabrics/{fabric['id']}/vlans"
    v10 = await call(api, "POST", in_path, {"vid": 10, "name": "san", "mtu": 9000}, expect=201)
    assert (v10["fabric_id"], v10["vid"], v10["mtu"]) == (fabric["id"], 10, 9000)
    v20 = await call(api, "POST", in_path, {"vid": 20, "fabric_id": fabric["id"]}, expect=201)
    v30 = await call(api, "POST", "/vlans", {"fabric_id": fabric["id"], "vid": 30}, expect=201)
    assert await call(api, "GET", f"/vlans/{v10['id']}") == v10

    of_fabric = await call(api, "GET", in_path)
    assert [v["vid"] for v in of_fabric["items"]] == [0, 10, 20, 30]
    filtered = await call(api, "GET", "/vlans", params={"fabric_id": fabric["id"]})
    assert filtered["items"] == of_fabric["items"]

    placed = await call(api, "PATCH", f"/vlans/{v10['id']}", {"space_id": space["id"]})
    assert (placed["space_id"], placed["mtu"], placed["name"]) == (space["id"], 9000, "san")
    in_space = await call(api, "GET", "/vlans", params={"space_id": space["id"]})
    assert [v["id"] for v in in_space["items"]] == [v10["id"]]
    cleared = await call(api, "PATCH", f"/vlans/{v10['id']}", {"space_id": None})
    assert (cleared["space_id"], cleared["mtu"]) == (None, 9000)

    await problem(api, "GET", f"/fabrics/{MISSING}/vlans", status=404, field="path.fabric_id")
    for vlan in (v20, v30):
        assert await call(api, "DELETE", f"/vlans/{vlan['id']}", expect=204) is None
        await problem(api, "GET", f"/vlans/{vlan['id']}", status=404, field="path.id")


async def test_subnet_round_trip(api: ApiUnderTest) -> None:
    fabric = await call(api, "POST", "/fabrics", {}, expect=201)
    vlan = fabric["default_vlan_id"]
    v4 = await call(
        api,
        "POST",
        "/subnets",
        {
            "cidr": "10.0.0.0/24",
            "vlan_id": vlan,
            "gateway_ip": "10.0.0.1",
            "dns_servers": ["1.1.1.1"],
        },
        expect=201,
    )
    assert (v4["name"], v4["ip_version"], v4["fabric_id"]) == ("10.0.0.0/24", 4, fabric["id"])
    v6 = await call(api, "POST", "/subnets", {"cidr": "2001:db8::/64", "vlan_id": vlan}, expect=201)
    assert v6["ip_version"] == 6
    assert await call(api, "GET", f"/subnets/{v4['id']}") == v4

    def ids(page: dict[str, Any]) -> list[int]:
        return [s["id"] for s in page["items"]]

    assert ids(await call(api, "GET", "/subnets", params={"contains": "10.0.0.77"})) == [v4["id"]]
    assert ids(await call(api, "GET", "/subnets", params={"contains": "2001:db8::7"})) == [v6["id"]]
    both = [v4["id"], v6["id"]]
    assert ids(await call(api, "GET", "/subnets", params={"vlan_id": vlan})) == both
    assert ids(await call(api, "GET", "/subnets", params={"fabric_id": fabric["id"]})) == both

    renamed = await call(api, "PATCH", f"/subnets/{v4['id']}", {"name": "lan"})
    # Only the fields sent change: the gateway and DNS servers stay.
    assert (renamed["name"], renamed["gateway_ip"], renamed["dns_servers"]) == (
        "lan",
        "10.0.0.1",
        ["1.1.1.1"],
    )
    no_gateway = await call(api, "PATCH", f"/subnets/{v4['id']}", {"gateway_ip": None})
    assert (no_gateway["name"], no_gateway["gateway_ip"]) == ("lan", None)

    assert await call(api, "DELETE", f"/subnets/{v6['id']}", expect=204) is None
    await problem(api, "GET", f"/subnets/{v6['id']}", status=404, field="path.id")

    # A subnet with an address in use goes only with force (which releases it).
    await call(api, "POST", "/ipaddresses", {"subnet_id": v4["id"]}, expect=201)
    await problem(api, "DELETE", f"/subnets/{v4['id']}", status=409, field="path.id")
    assert await call(api, "GET", f"/subnets/{v4['id']}") == no_gateway
    await call(api, "DELETE", f"/subnets/{v4['id']}", params={"force": "true"}, expect=204)
    assert (await call(api, "GET", "/ipaddresses"))["items"] == []


async def test_static_route_round_trip(api: ApiUnderTest) -> None:
    fabric = await call(api, "POST", "/fabrics", {}, expect=201)
    vlan = fabric["default_vlan_id"]
    source = await call(
        api, "POST", "/subnets", {"cidr": "10.0.0.0/24", "vlan_id": vlan}, expect=201
    )
    target = await call(
        api, "POST", "/subnets", {"cidr": "10.9.0.0/16", "vlan_id": vlan}, expect=201
    )
    route = await call(
        api,
        "POST",
        "/static-routes",
        {
            "source_subnet_id": source["id"],
            "destination_subnet_id": target["id"],
            "gateway_ip": "10.0.0.254",
            "metric": 10,
        },
        expect=201,
    )
    assert (route["destination_cidr"], route["gateway_ip"]) == ("10.9.0.0/16", "10.0.0.254")
    assert await call(api, "GET", f"/static-routes/{route['id']}") == route
    listed = await call(api, "GET", "/static-routes", params={"source_subnet_id": source["id"]})
    assert listed["items"] == [route]
    changed = await call(api, "PATCH", f"/static-routes/{route['id']}", {"metric": 20})
    assert (changed["metric"], changed["gateway_ip"]) == (20, "10.0.0.254")
    await problem(
        api,
        "PATCH",
        f"/static-routes/{route['id']}",
        {"gateway_ip": "10.9.0.1"},  # not in the source subnet
        status=422,
        field="body.gateway_ip",
    )
    assert await call(api, "DELETE", f"/static-routes/{route['id']}", expect=204) is None
    await problem(api, "GET", f"/static-routes/{route['id']}", status=404, field="path.id")


async def test_iprange_round_trip(api: ApiUnderTest) -> None:
    fabric = await call(api, "POST", "/fabrics", {}, expect=201)
    subnet = await call(
        api,
        "POST",
        "/subnets",
        {"cidr": "10.0.0.0/24", "vlan_id": fabric["default_vlan_id"]},
        expect=201,
    )
    dynamic = await call(
        api,
        "POST",
        "/ipranges",
        {
            "subnet_id": subnet["id"],
            "type": "dynamic",
            "start_ip": "10.0.0.100",
            "end_ip": "10.0.0.199",
        },
        expect=201,
    )
    assert (dynamic["size"], dynamic["type"]) == (100, "dynamic")
    # Without subnet_id the subnet is found from the addresses.
    reserved = await call(
        api,
        "POST",
        "/ipranges",
        {"type": "reserved", "start_ip": "10.0.0.10", "end_ip": "10.0.0.19", "comment": "sw"},
        expect=201,
    )
    assert (reserved["subnet_id"], reserved["size"]) == (subnet["id"], 10)
    assert await call(api, "GET", f"/ipranges/{reserved['id']}") == reserved
    only = await call(
        api, "GET", "/ipranges", params={"subnet_id": subnet["id"], "type": "reserved"}
    )
    assert only["items"] == [reserved]

    commented = await call(api, "PATCH", f"/ipranges/{reserved['id']}", {"comment": "switches"})
    assert (commented["comment"], commented["end_ip"]) == ("switches", "10.0.0.19")
    grown = await call(api, "PATCH", f"/ipranges/{reserved['id']}", {"end_ip": "10.0.0.29"})
    assert (grown["size"], grown["comment"]) == (20, "switches")

    assert await call(api, "DELETE", f"/ipranges/{reserved['id']}", expect=204) is None
    await problem(api, "GET", f"/ipranges/{reserved['id']}", status=404, field="path.id")
    assert (await call(api, "GET", "/ipranges"))["items"] == [dynamic]


# -- addresses ----------------------------------------------------------------------------


async def test_allocation_retried_with_the_same_key_gets_the_same_address(
    api: ApiUnderTest,
) -> None:
    fabric = await call(api, "POST", "/fabrics", {}, expect=201)
    subnet = await call(
        api,
        "POST",
        "/subnets",
        {"cidr": "10.0.0.0/24", "vlan_id": fabric["default_vlan_id"], "gateway_ip": "10.0.0.1"},
        expect=201,
    )
    body = {"subnet_id": subnet["id"], "hostname": "node1", "mac": "AA-BB-CC-DD-EE-01"}
    key = {"Idempotency-Key": "alloc-1"}
    first = await call(api, "POST", "/ipaddresses", body, headers=key, expect=201)
    assert ipaddress.ip_address(first["ip"]) in ipaddress.ip_network("10.0.0.0/24")
    assert first["ip"] != "10.0.0.1"  # never the gateway
    assert (first["alloc_type"], first["mac"]) == ("auto", "aa:bb:cc:dd:ee:01")

    retried = await call(api, "POST", "/ipaddresses", body, headers=key, expect=201)
    assert (retried["id"], retried["ip"]) == (first["id"], first["ip"])
    in_body = await call(
        api, "POST", "/ipaddresses", {**body, "idempotency_key": "alloc-1"}, expect=201
    )
    assert in_body["id"] == first["id"]
    await problem(
        api,
        "POST",
        "/ipaddresses",
        {**body, "idempotency_key": "other"},
        headers=key,
        status=422,
        field="header.Idempotency-Key",
    )
    await problem(
        api,
        "POST",
        "/ipaddresses",
        body,
        headers={"Idempotency-Key": "k" * 129},
        status=422,
        field="header.Idempotency-Key",
    )

    other_key = {"Idempotency-Key": "alloc-2"}
    second = await call(
        api, "POST", "/ipaddresses", {"subnet_id": subnet["id"]}, headers=other_key, expect=201
    )
    assert second["ip"] != first["ip"]
    # The same key with another request: refused, and the fault is the header the key came in.
    await problem(
        api,
        "POST",
        "/ipaddresses",
        {"subnet_id": subnet["id"], "ip": "10.0.0.9"},
        headers=key,
        status=409,
        field="header.Idempotency-Key",
    )
    chosen = await call(
        api,
        "POST",
        "/ipaddresses",
        {"subnet_id": subnet["id"], "ip": "10.0.0.50", "alloc_type": "user_reserved"},
        expect=201,
    )
    assert (chosen["ip"], chosen["alloc_type"]) == ("10.0.0.50", "user_reserved")

    listed = await call(api, "GET", "/ipaddresses", params={"subnet_id": subnet["id"]})
    assert [a["id"] for a in listed["items"]] == [first["id"], second["id"], chosen["id"]]
    by_mac = await call(api, "GET", "/ipaddresses", params={"mac": "aabb.ccdd.ee01"})
    assert [a["id"] for a in by_mac["items"]] == [first["id"]]
    by_ip = await call(api, "GET", "/ipaddresses", params={"ip": "10.0.0.50"})
    assert [a["id"] for a in by_ip["items"]] == [chosen["id"]]
    assert await call(api, "GET", f"/ipaddresses/{first['id']}") == first


async def test_release_by_ip_and_by_id(api: ApiUnderTest) -> None:
    net = await build(api)
    released = await call(api, "POST", "/ipaddresses/release", {"ip": "10.0.0.50"})
    assert (released["id"], released["ip"]) == (net.address, "10.0.0.50")
    await problem(api, "GET", f"/ipaddresses/{net.address}", status=404, field="path.id")
    await problem(
        api, "POST", "/ipaddresses/release", {"ip": "10.0.0.50"}, status=404, field="body.ip"
    )

    auto = await call(api, "POST", "/ipaddresses", {"subnet_id": net.v4}, expect=201)
    deleted = await call(api, "DELETE", f"/ipaddresses/{auto['id']}")
    assert (deleted["id"], deleted["ip"]) == (auto["id"], auto["ip"])
    await problem(api, "DELETE", f"/ipaddresses/{auto['id']}", status=404, field="path.id")
    assert (await call(api, "GET", "/ipaddresses"))["items"] == []


async def test_subnet_statistics(api: ApiUnderTest) -> None:
    net = await build(api)  # gateway .1, dynamic .100-.199, 10.0.0.50 in use
    stats = await call(api, "GET", f"/subnets/{net.v4}/statistics")
    assert (stats["subnet_id"], stats["cidr"], stats["ip_version"]) == (net.v4, "10.0.0.0/24", 4)
    assert (stats["total"], stats["used"], stats["available"]) == (254, 102, 152)
    assert [r["range_id"] for r in stats["ranges"]] == [net.dynamic]
    assert stats["ranges"][0]["total"] == 100
    assert stats["free_blocks_truncated"] is False and len(stats["free_blocks"]) == 3

    one = await call(api, "GET", f"/subnets/{net.v4}/statistics", params={"free_block_limit": 1})
    assert len(one["free_blocks"]) == 1 and one["free_blocks_truncated"] is True
    await problem(
        api,
        "GET",
        f"/subnets/{net.v4}/statistics?free_block_limit=-1",
        status=422,
        field="query.free_block_limit",
    )
    await problem(api, "GET", f"/subnets/{MISSING}/statistics", status=404, field="path.id")


async def test_dhcp_config_lists_dhcp_vlans_with_ranges_and_reservations(
    api: ApiUnderTest,
) -> None:
    net = await build(api)
    assert await call(api, "GET", "/dhcp-config") == {"vlans": []}
    await call(api, "PATCH", f"/vlans/{net.vlan}", {"dhcp_on": True})
    host = await call(
        api,
        "POST",
        "/ipaddresses",
        {"subnet_id": net.v4, "alloc_type": "sticky", "mac": "aa:bb:cc:00:00:01"},
        expect=201,
    )
    config = await call(api, "GET", "/dhcp-config")
    [served] = config["vlans"]
    assert served["vlan"]["id"] == net.vlan and served["vlan"]["dhcp_on"] is True
    v4 = next(s for s in served["subnets"] if s["subnet"]["id"] == net.v4)
    assert [r["id"] for r in v4["dynamic_ranges"]] == [net.dynamic]
    assert [(r["address_id"], r["mac"]) for r in v4["reservations"]] == [
        (host["id"], "aa:bb:cc:00:00:01")
    ]


# -- roles, paging, OpenAPI -----------------------------------------------------------------


async def test_readonly_reads_and_cannot_write(api: ApiUnderTest) -> None:
    net = await build(api)
    issued = await call(api, "POST", "/tokens", {"name": "viewer", "role": "readonly"}, expect=201)
    viewer = str(issued["token"])
    before = await everything(api)
    for path in (*COLLECTIONS, f"/subnets/{net.v4}/statistics", "/dhcp-config"):
        await call(api, "GET", path, token=viewer)
    writes: list[tuple[str, str, Any]] = [
        ("POST", "/fabrics", {}),
        ("PATCH", f"/fabrics/{net.fabric}", {"name": "x"}),
        ("DELETE", f"/fabrics/{net.fabric}", None),
        ("POST", f"/fabrics/{net.fabric}/vlans", {"vid": 99}),
        ("DELETE", f"/subnets/{net.v4}?force=true", None),
        ("POST", "/ipranges", {"type": "reserved", "start_ip": "10.0.0.2", "end_ip": "10.0.0.3"}),
        ("POST", "/ipaddresses", {"subnet_id": net.v4}),
        ("POST", "/ipaddresses/release", {"ip": "10.0.0.50"}),
        ("DELETE", f"/ipaddresses/{net.address}", None),
    ]
    for method, path, body in writes:
        answer = await call(api, method, path, body, token=viewer, expect=403)
        assert answer["code"] == "forbidden"
    assert await everything(api) == before

    issued = await call(api, "POST", "/tokens", {"name": "ops", "role": "operator"}, expect=201)
    await call(api, "POST", "/fabrics", {}, token=str(issued["token"]), expect=201)


async def test_lists_page_by_id(api: ApiUnderTest) -> None:
    created = [
        (await call(api, "POST", "/spaces", {"name": f"s{i}"}, expect=201))["id"] for i in range(5)
    ]
    seen: list[int] = []
    after = 0
    while True:
        page = await call(api, "GET", "/spaces", params={"after": after, "limit": 2})
        assert len(page["items"]) <= 2
        seen += [s["id"] for s in page["items"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == created
    for query, field in [
        ("limit=0", "query.limit"),
        ("limit=1001", "query.limit"),
        ("after=-1", "query.after"),
        ("colour=red", "query.colour"),
    ]:
        await problem(api, "GET", f"/spaces?{query}", status=422, field=field)


async def test_openapi_documents_every_ipam_route(api: ApiUnderTest) -> None:
    document = (await api.client.get(f"{V1}/openapi.json")).json()
    prefixes = tuple(f"{V1}{c}" for c in (*COLLECTIONS, "/dhcp-config"))
    operations = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        if path.startswith(prefixes)
        for method, operation in methods.items()
    ]
    # 6 kinds x 5 routes, a fabric's VLANs (2), statistics, addresses (5), DHCP config.
    assert len(operations) == 39
    for path, method, operation in operations:
        assert operation.get("summary"), (method, path)
        success = [s for s in operation["responses"] if s.startswith("2")]
        assert len(success) == 1, (method, path)
        if success != ["204"]:
            content = operation["responses"][success[0]]["content"]["application/json"]
            assert "$ref" in content["schema"], (method, path)
        if method in ("post", "patch"):
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert "$ref" in body, (method, path)
        for status in ("401", "403", "404", "409", "422"):
            assert list(operation["responses"][status]["content"]) == [PROBLEM]
    assert document["paths"][f"{V1}/fabrics/{{id}}"]["delete"]["responses"].keys() >= {"204"}


# -- bad input: 4xx naming the field, nothing changed -------------------------------------

Case = Callable[[Net], tuple[str, str, Any]]
BAD: list[tuple[str, Case, int | tuple[int, ...], str | tuple[str, ...]]] = [
    (
        "invalid-cidr",
        lambda n: ("POST", "/subnets", {"cidr": "10.0.0.300/24", "vlan_id": n.vlan}),
        422,
        "body.cidr",
    ),
    (
        "host-bits-set",
        lambda n: ("POST", "/subnets", {"cidr": "10.1.0.1/24", "vlan_id": n.vlan}),
        422,
        "body.cidr",
    ),
    (
        "overlapping-subnet",
        lambda n: ("POST", "/subnets", {"cidr": "10.0.0.128/25", "vlan_id": n.vlan}),
        (409, 422),
        "body.cidr",
    ),
    (
        "unknown-vlan",
        lambda n: ("POST", "/subnets", {"cidr": "10.7.0.0/24", "vlan_id": MISSING}),
        (404, 422),
        "body.vlan_id",
    ),
    (
        "gateway-outside-subnet",
        lambda n: ("PATCH", f"/subnets/{n.v4}", {"gateway_ip": "10.0.1.1"}),
        422,
        "body.gateway_ip",
    ),
    (
        "gateway-in-a-range",
        lambda n: ("PATCH", f"/subnets/{n.v4}", {"gateway_ip": "10.0.0.150"}),
        (409, 422),
        "body.gateway_ip",
    ),
    (
        "range-outside-subnet",
        lambda n: (
            "POST",
            "/ipranges",
            {"subnet_id": n.v4, "type": "reserved", "start_ip": "10.0.0.250", "end_ip": "10.0.1.5"},
        ),
        422,
        ("body.start_ip", "body.end_ip"),
    ),
    (
        "range-backwards",
        lambda n: (
            "POST",
            "/ipranges",
            {"subnet_id": n.v4, "type": "reserved", "start_ip": "10.0.0.20", "end_ip": "10.0.0.10"},
        ),
        422,
        ("body.start_ip", "body.end_ip"),
    ),
    (
        "overlapping-ranges",
        lambda n: (
            "POST",
            "/ipranges",
            {
                "subnet_id": n.v4,
                "type": "reserved",
                "start_ip": "10.0.0.150",
                "end_ip": "10.0.0.210",
            },
        ),
        (409, 422),
        ("body.start_ip", "body.end_ip"),
    ),
    (
        "ipv4-range-in-ipv6-subnet",
        lambda n: (
            "POST",
            "/ipranges",
            {"subnet_id": n.v6, "type": "reserved", "start_ip": "10.0.0.2", "end_ip": "10.0.0.3"},
        ),
        422,
        ("body.start_ip", "body.end_ip"),
    ),
    (
        "range-update-outside-subnet",
        lambda n: ("PATCH", f"/ipranges/{n.dynamic}", {"end_ip": "10.0.1.1"}),
        422,
        "body.end_ip",
    ),
    (
        "range-unknown-subnet",
        lambda n: (
            "POST",
            "/ipranges",
            {
                "subnet_id": MISSING,
                "type": "reserved",
                "start_ip": "10.0.0.2",
                "end_ip": "10.0.0.3",
            },
        ),
        (404, 422),
        "body.subnet_id",
    ),
    (
        "vid-4095",
        lambda n: ("POST", f"/fabrics/{n.fabric}/vlans", {"vid": 4095}),
        422,
        "body.vid",
    ),
    (
        "vid-taken",
        lambda n: ("POST", f"/fabrics/{n.fabric}/vlans", {"vid": 10}),
        (409, 422),
        "body.vid",
    ),
    (
        "vid-taken-on-update",
        lambda n: ("PATCH", f"/vlans/{n.vlan}", {"vid": 0}),
        (409, 422),
        "body.vid",
    ),
    (
        "unknown-fabric-in-body",
        lambda n: ("POST", "/vlans", {"fabric_id": MISSING, "vid": 5}),
        (404, 422),
        "body.fabric_id",
    ),
    (
        "unknown-fabric-in-path",
        lambda n: ("POST", f"/fabrics/{MISSING}/vlans", {"vid": 5}),
        (404, 422),
        "path.fabric_id",
    ),
    (
        "fabric-in-body-is-not-the-path",
        lambda n: ("POST", f"/fabrics/{n.fabric}/vlans", {"fabric_id": MISSING, "vid": 5}),
        422,
        "body.fabric_id",
    ),
    (
        "unknown-space-on-update",
        lambda n: ("PATCH", f"/vlans/{n.vlan}", {"space_id": MISSING}),
        (404, 422),
        "body.space_id",
    ),
    (
        "address-taken",
        lambda n: ("POST", "/ipaddresses", {"subnet_id": n.v4, "ip": "10.0.0.50"}),
        409,
        "body.ip",
    ),
    (
        "address-outside-subnet",
        lambda n: ("POST", "/ipaddresses", {"subnet_id": n.v4, "ip": "10.0.1.50"}),
        422,
        "body.ip",
    ),
    (
        "address-not-an-address",
        lambda n: ("POST", "/ipaddresses", {"subnet_id": n.v4, "ip": "10.0.0.500"}),
        422,
        "body.ip",
    ),
    (
        "unknown-field",
        lambda n: ("PATCH", f"/subnets/{n.v4}", {"cidr": "10.0.0.0/16"}),
        422,
        "body.cidr",
    ),
    ("unknown-subnet-get", lambda n: ("GET", f"/subnets/{MISSING}", None), 404, "path.id"),
    (
        "unknown-subnet-patch",
        lambda n: ("PATCH", f"/subnets/{MISSING}", {"name": "x"}),
        404,
        "path.id",
    ),
    ("unknown-subnet-delete", lambda n: ("DELETE", f"/subnets/{MISSING}", None), 404, "path.id"),
    ("id-zero", lambda n: ("GET", "/subnets/0", None), 422, "path.id"),
    ("bad-contains", lambda n: ("GET", "/subnets?contains=nope", None), 422, "query.contains"),
]


@pytest.mark.parametrize(("case", "status", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_input_names_the_field_and_changes_nothing(
    api: ApiUnderTest,
    case: Case,
    status: int | tuple[int, ...],
    field: str | tuple[str, ...],
) -> None:
    net = await build(api)
    before = await everything(api)
    method, path, body = case(net)
    await problem(api, method, path, body, status=status, field=field)
    assert await everything(api) == before
