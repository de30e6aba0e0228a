"""Machines and KVM hosts: composed VMs become machines, and an allocation nothing Ready
can meet composes one (libvirt's test driver with the compose tests' host file)."""

from __future__ import annotations

from metalbus.shared.contract import compose as c
from tests.compose.conftest import KVM, ComposeUnderTest
from tests.helpers import async_wait_for
from tests.machines.conftest import Stack, ok, ready_machine
from tests.power.conftest import IpmiSim


async def machines(stack: Stack) -> list[dict[str, object]]:
    return await ok(await stack.http.get("/machines"))  # type: ignore[no-any-return]


async def test_a_composed_vm_becomes_a_new_machine_once(
    compose_stack: Stack, compose: ComposeUnderTest
) -> None:
    stack = compose_stack
    await stack.start_api()
    await compose.network(untagged_dhcp=False, maas_dhcp=True)
    host = await stack.call(c.HOST_CREATE, uri=KVM)
    result = await stack.call(c.VM_COMPOSE, host_id=host.id, cores=2, memory=1024, hostname="vm1")
    [vm] = result.vms

    async def made() -> list[dict[str, object]]:
        return [m for m in await machines(stack) if m["vm_id"] == vm.id]

    [machine] = await async_wait_for(made, 15, "vm.composed to become a machine")
    assert machine["status"] == "new" and machine["hostname"] == "vm1"
    assert machine["pod_id"] == host.id and machine["cores"] == 2 and machine["memory"] == 1024
    assert machine["power"]["driver"] == "virsh"
    assert machine["power"]["settings"] == {"uri": KVM, "domain": vm.uuid}
    assert [i["mac"] for i in machine["interfaces"]] == [i.mac for i in vm.interfaces]

    # Decomposed through the pods side: the machine goes with it.
    await stack.call(c.VM_DECOMPOSE, id=vm.id)

    async def gone() -> bool:
        return not await made()

    await async_wait_for(gone, 15, "vm.decomposed to remove the machine")


async def test_allocation_composes_when_nothing_ready_fits_and_release_decomposes(
    compose_stack: Stack, compose: ComposeUnderTest
) -> None:
    stack = compose_stack
    await stack.start_api()
    await compose.network(untagged_dhcp=False, maas_dhcp=True)
    # Without a KVM host nothing can be composed: the refusal says so.
    refused = await stack.http.post("/machines/allocate", json={"cores": 2, "memory": 1024})
    assert refused.status_code == 409 and "no KVM host" in refused.json()["detail"]
    host = await stack.call(c.HOST_CREATE, uri=KVM)
    # More than the host has: each host's shortfall is named.
    too_big = await stack.http.post("/machines/allocate", json={"cores": 500})
    assert too_big.status_code == 409 and host.name in too_big.json()["detail"]

    allocated = await ok(
        await stack.http.post(
            "/machines/allocate", json={"cores": 2, "memory": 1024, "storage": "root:10"}
        )
    )
    sid = allocated["system_id"]
    assert allocated["status"] == "allocated" and allocated["pod_id"] == host.id
    assert allocated["cores"] == 2 and allocated["memory"] == 1024
    assert allocated["storage"] == 10 * 1000**3
    assert allocated["power"] == {
        "driver": "virsh",
        "bmc_id": None,
        "settings": allocated["power"]["settings"],
    }
    assert allocated["power"]["settings"]["uri"] == KVM
    vm_id = allocated["vm_id"]
    assert [v.id for v in (await stack.call(c.VM_LIST)).items if v.composed] == [vm_id]

    # compose's vm.composed arrives too: it finds the machine the allocation made.
    await async_wait_for(
        lambda: stack.consumer_idle("compose", "api-machines"), 15, "vm.composed applied"
    )
    assert [m["system_id"] for m in await machines(stack)] == [sid]
    assert (await stack.machine(sid))["status"] == "allocated"

    # Release decomposes the VM and the machine goes.
    await ok(await stack.http.post(f"/machines/{sid}/release"), 202)

    async def decomposed() -> bool:
        return (await stack.http.get(f"/machines/{sid}")).status_code == 404

    await async_wait_for(decomposed, 30, "the release to decompose the machine")
    assert [v.id for v in (await stack.call(c.VM_LIST)).items if v.composed] == []


async def test_a_machine_deployed_as_a_kvm_host_registers_as_a_deployed_pod(
    compose_stack: Stack, compose: ComposeUnderTest, ipmi_sim: IpmiSim
) -> None:
    stack = compose_stack
    # The "installed" host is libvirt's test driver with the compose tests' host file.
    await stack.start_api(kvm_host_uri=KVM)
    net = await compose.network()
    sid = await ready_machine(stack, {"driver": "ipmi", "settings": ipmi_sim.settings()})
    eth0 = (await stack.machine(sid))["interfaces"][0]["id"]
    link = {"mode": "auto", "subnet_id": net.subnets["10.0.0.0/24"]}
    await ok(await stack.http.post(f"/machines/{sid}/interfaces/{eth0}/links", json=link), 201)
    await ok(await stack.http.post("/machines/allocate", json={"system_id": sid}))
    await ok(await stack.http.post(f"/machines/{sid}/deploy", json={"install_kvm": True}), 202)
    deploying = await stack.wait_machine(sid, "the deploy callback", flow_step="wait_callback")
    address = deploying["interfaces"][0]["links"][0]["ip"]
    await stack.report_result(sid, "52:54:00:00:00:01", "deploy")
    await stack.wait_machine(sid, "the KVM host to be registered", status="deployed", flow=None)
    [host] = (await stack.call(c.HOST_LIST)).items
    assert host.origin == c.HostOrigin.DEPLOYED and host.uri == KVM
    assert host.host_ip == address and host.name == deploying["hostname"]
    # ipam knows the address as the machine's: compose correlates the host with it.
    assert host.correlated and host.correlated_with is not None and sid in host.correlated_with
