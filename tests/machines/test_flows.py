"""Flows that must not get stuck: a restarted api finishes a deploy, stuck machines time
out, illegal moves are refused, and each enlistment happens once."""

from __future__ import annotations

from metalbus.shared.contract import ipam as ip
from tests.api.conftest import SPANS
from tests.helpers import async_wait_for
from tests.machines.conftest import Stack, ok, ready_machine
from tests.power.conftest import IpmiSim

MAC = "52:54:00:00:00:01"


async def test_an_api_restarted_mid_deploy_finishes_the_deploy(
    stack: Stack, ipmi_sim: IpmiSim
) -> None:
    await stack.start_boot()
    await stack.start_api()
    subnet = await stack.call(ip.SUBNET_CREATE, cidr="10.77.0.0/24")
    sid = await ready_machine(stack, {"driver": "ipmi", "settings": ipmi_sim.settings()}, MAC)
    eth0 = (await stack.machine(sid))["interfaces"][0]["id"]
    await ok(
        await stack.http.post(
            f"/machines/{sid}/interfaces/{eth0}/links",
            json={"mode": "auto", "subnet_id": subnet.id},
        ),
        201,
    )
    await ok(await stack.http.post("/machines/allocate", json={"system_id": sid}))

    # The power service goes away: the deploy gets as far as powering on, and retries.
    await stack.stop_power()
    await ok(await stack.http.post(f"/machines/{sid}/deploy"), 202)
    stuck = await stack.wait_machine(sid, "the deploy to wait on power", flow_step="power_on")

    async def retrying() -> bool:
        return (await stack.machine(sid))["flow_error"] is not None

    await async_wait_for(retrying, 15, "the power step to fail and be retried")
    assert stuck["status"] == "deploying" and ipmi_sim.power == "off"

    # The api stops mid-deploy; power comes back; a new api process resumes the flow.
    await stack.stop_api()
    await stack.start_power()
    await stack.start_api()
    resumed = await stack.wait_machine(
        sid, "the restarted api to power the machine on", flow_step="wait_callback"
    )
    assert ipmi_sim.power == "on" and resumed["flow_error"] is None
    # The address the first process got from ipam is the one the machine keeps.
    [address] = (await stack.call(ip.ADDRESS_LIST, owner_id=sid)).items
    assert resumed["interfaces"][0]["links"][0]["ip"] == address.ip
    assert (await stack.report_result(sid, MAC, "deploy"))["status"] == "deployed"


async def test_a_machine_stuck_commissioning_times_out_to_failed(
    stack: Stack, ipmi_sim: IpmiSim
) -> None:
    await stack.start_boot()
    await stack.start_api(commissioning_timeout_s=1.0)
    body = {
        "interfaces": [{"name": "eth0", "mac": MAC}],
        "power": {"driver": "ipmi", "settings": ipmi_sim.settings()},
    }
    sid = (await ok(await stack.http.post("/machines", json=body), 201))["system_id"]
    await ok(await stack.http.post(f"/machines/{sid}/commission"), 202)
    # Nobody calls back: the machine must not stay Commissioning.
    failed = await stack.wait_machine(
        sid, "commissioning to time out", status="failed_commissioning"
    )
    assert failed["flow"] is None
    history = await ok(await stack.http.get(f"/machines/{sid}/history"))
    assert history[-1]["action"] == "timeout" and "commissioning" in history[-1]["message"]
    # Its token is gone with the flow: a late callback is refused.
    late = await stack.http.post(
        f"/machines/{sid}/callback/commissioning",
        json={"cores": 1, "memory": 1024, "interfaces": [{"name": "eth0", "mac": MAC}]},
        headers={"Authorization": "Bearer anything"},
    )
    assert late.status_code == 401


async def test_a_step_that_cannot_work_fails_the_flow(stack: Stack) -> None:
    await stack.start_boot()
    await stack.start_api()
    sid = (
        await ok(
            await stack.http.post("/machines", json={"interfaces": [{"name": "eth0", "mac": MAC}]}),
            201,
        )
    )["system_id"]
    await ok(await stack.http.post(f"/machines/{sid}/commission"), 202)
    failed = await stack.wait_machine(
        sid, "commissioning without power to fail", status="failed_commissioning"
    )
    assert "no power driver" in failed["flow_error"]


async def test_illegal_moves_are_refused_with_the_action_and_status(stack: Stack) -> None:
    await stack.start_api()
    sid = (
        await ok(
            await stack.http.post("/machines", json={"interfaces": [{"name": "eth0", "mac": MAC}]}),
            201,
        )
    )["system_id"]
    for action in ("deploy", "release", "mark-fixed", "exit-rescue-mode", "abort"):
        response = await stack.http.post(f"/machines/{sid}/{action}")
        assert response.status_code == 409, (action, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "conflict"
        assert action.replace("-", " ") in problem["detail"] and "new" in problem["detail"], problem
    # Nothing moved, nothing was recorded.
    assert (await stack.machine(sid))["status"] == "new"
    assert await ok(await stack.http.get(f"/machines/{sid}/history")) == []
    # A machine not Ready is not allocated.
    assert (await stack.http.post("/machines/allocate", json={"system_id": sid})).status_code == 409
    # Mark broken and fixed are legal from New.
    assert (await ok(await stack.http.post(f"/machines/{sid}/mark-broken"), 202))[
        "status"
    ] == "broken"
    assert (await ok(await stack.http.post(f"/machines/{sid}/mark-fixed"), 202))[
        "status"
    ] == "ready"
    # A callback without a flow waiting for it is refused.
    refused = await stack.http.post(f"/machines/{sid}/callback/result", json={"result": "success"})
    assert refused.status_code == 401


async def test_bad_input_names_the_field(stack: Stack) -> None:
    await stack.start_api()
    http = stack.http
    bad_mac = await http.post("/machines", json={"interfaces": [{"name": "eth0", "mac": "nope"}]})
    assert bad_mac.status_code == 422 and bad_mac.json()["field"].startswith("body.interfaces")
    no_zone = await http.post(
        "/machines", json={"interfaces": [{"name": "eth0", "mac": MAC}], "zone": "mars"}
    )
    assert no_zone.status_code == 422 and no_zone.json()["field"] == "body.zone"
    bad_power = await http.post(
        "/machines",
        json={
            "interfaces": [{"name": "eth0", "mac": MAC}],
            "power": {"driver": "ipmi", "settings": {}},
        },
    )
    assert bad_power.status_code == 422 and bad_power.json()["field"].startswith(
        "body.power.settings"
    ), bad_power.text
    # Nothing half-written: neither machine exists, and the MAC is still free.
    assert await ok(await http.get("/machines")) == []
    sid = (
        await ok(
            await http.post("/machines", json={"interfaces": [{"name": "eth0", "mac": MAC}]}), 201
        )
    )["system_id"]
    taken = await http.post("/machines", json={"interfaces": [{"name": "eth0", "mac": MAC}]})
    assert taken.status_code == 409 and taken.json()["field"] == "body.interfaces"
    bad_storage = await http.post("/machines/allocate", json={"storage": "root=20"})
    assert bad_storage.status_code == 422 and bad_storage.json()["field"] == "body.storage"
    eth0 = (await stack.machine(sid))["interfaces"][0]["id"]
    static = await http.post(
        f"/machines/{sid}/interfaces/{eth0}/links", json={"mode": "static", "subnet_id": 1}
    )
    assert static.status_code == 422 and static.json()["field"] == "body.ip"
    no_subnet = await http.post(
        f"/machines/{sid}/interfaces/{eth0}/links", json={"mode": "auto", "subnet_id": 999}
    )
    assert no_subnet.status_code == 404 and no_subnet.json()["field"] == "body.subnet_id", (
        no_subnet.text
    )


async def test_testing_and_rescue_mode_go_back_where_they_came_from(stack: Stack) -> None:
    await stack.start_boot()
    await stack.start_api()
    # A manual BMC cannot set the boot device: power-on goes without the PXE override.
    sid = await ready_machine(stack, {"driver": "manual"}, MAC)
    await ok(await stack.http.post(f"/machines/{sid}/test"), 202)
    await stack.wait_machine(sid, "testing to wait for its result", flow_step="wait_callback")
    assert (await stack.report_result(sid, MAC, "commissioning"))["status"] == "ready"

    await ok(await stack.http.post(f"/machines/{sid}/mark-broken"), 202)
    rescue = await ok(await stack.http.post(f"/machines/{sid}/rescue-mode"), 202)
    assert rescue["status"] == "rescue_mode"
    await stack.wait_machine(sid, "the rescue environment to boot", flow=None)
    assert (await stack.boot_config(MAC)).purpose == "commissioning"
    back = await ok(await stack.http.post(f"/machines/{sid}/exit-rescue-mode"), 202)
    assert back["status"] == "broken"
    await stack.wait_machine(sid, "the machine to boot locally again", flow=None)
    assert (await stack.boot_config(MAC)).purpose == "local"
    steps = [h["action"] for h in await ok(await stack.http.get(f"/machines/{sid}/history"))]
    assert steps[-5:] == ["test", "tested", "mark_broken", "rescue_mode", "exit_rescue_mode"]


async def test_a_flow_is_one_trace(stack: Stack) -> None:
    await stack.start_boot()
    await stack.start_api()
    body = {"interfaces": [{"name": "eth0", "mac": MAC}], "power": {"driver": "manual"}}
    sid = (await ok(await stack.http.post("/machines", json=body), 201))["system_id"]
    SPANS.clear()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    await ok(
        await stack.http.post(f"/machines/{sid}/commission", headers={"traceparent": traceparent}),
        202,
    )
    await stack.wait_machine(
        sid, "commissioning to wait for the callback", flow_step="wait_callback"
    )

    def names() -> dict[str, str]:
        return {s.name: format(s.context.trace_id, "032x") for s in SPANS.get_finished_spans()}

    wanted = {
        "machine commission.boot_config",
        "machine commission.power_on",
        "metalbus.cmd.boot.config_set process",
        "metalbus.cmd.power.power_on process",
    }
    await async_wait_for(lambda: wanted <= set(names()), 10, "the steps' spans")
    assert {names()[n] for n in wanted} == {trace_id}


async def test_a_failed_deployment_can_be_deployed_again_or_released(stack: Stack) -> None:
    await stack.start_boot()
    await stack.start_api()
    sid = await ready_machine(stack, {"driver": "manual"}, MAC)
    await ok(await stack.http.post("/machines/allocate", json={"system_id": sid}))
    for attempt in ("failure", "success"):
        await ok(await stack.http.post(f"/machines/{sid}/deploy"), 202)
        await stack.wait_machine(sid, "the deploy callback", flow_step="wait_callback")
        answer = await stack.report_result(sid, MAC, "deploy", attempt, message="curtin said so")
        assert answer["status"] == ("failed_deployment" if attempt == "failure" else "deployed")
    await ok(await stack.http.post(f"/machines/{sid}/release"), 202)
    await stack.wait_machine(sid, "the release", status="ready", flow=None)
    history = await ok(await stack.http.get(f"/machines/{sid}/history"))
    failed = next(h for h in history if h["status"] == "failed_deployment")
    assert failed["action"] == "fail" and failed["message"] == "curtin said so"
