"""A machine's whole life on real services: a real DHCP client network-boots from an unknown
MAC (busybox udhcpc in a namespace, as a PXE ROM would: vendor class ``PXEClient``), the
api enlists it, commissions it with ipmi_sim as its BMC, allocates, deploys and releases it.

The boot environments are played by the test: it reads the callback token from the
machine's boot config (the kernel command line the environment would get) and posts what
a commissioning or deploy environment posts.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from metalbus.shared.contract import ipam as ip
from tests.boot.test_real_clients import SERVER_IP, UDHCPC_SCRIPT, Veth, script
from tests.helpers import async_wait_for
from tests.machines.conftest import Stack, ok
from tests.power.conftest import IpmiSim

PXE_VENDOR = "PXEClient:Arch:00000:UNDI:002001"
MAC2 = "52:54:00:aa:bb:02"
HARDWARE = {
    "cores": 4,
    "memory": 8192,
    "disks": [{"name": "sda", "size": 500 * 1000**3, "model": "QEMU HARDDISK"}],
}


async def test_enlist_commission_allocate_deploy_release(
    stack: Stack, veth: Veth, ipmi_sim: IpmiSim, tmp_path: Path
) -> None:
    subnet = await stack.serve_dhcp("10.213.7.0/24", SERVER_IP, "10.213.7.100", "10.213.7.150")
    await stack.start_boot(dhcp_interfaces=[veth.host])
    await stack.start_api()
    http = stack.http

    # Enlist: a MAC nobody knows network-boots; boot reports it; the api makes it New.
    log = tmp_path / "udhcpc.log"
    udhcpc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", veth.namespace, "busybox", "udhcpc", "-f", "-i", veth.peer,
        "-V", PXE_VENDOR, "-s", str(script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT, log)),
        "-t", "20", "-T", "1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:

        async def enlisted() -> list[dict[str, object]]:
            machines = await ok(await http.get("/machines"))
            return [m for m in machines if veth.mac in [i["mac"] for i in m["interfaces"]]]

        [machine] = await async_wait_for(enlisted, 30, "the PXE-booting MAC to be enlisted")
    finally:
        udhcpc.send_signal(signal.SIGTERM)
        await udhcpc.wait()
    sid = machine["system_id"]
    assert machine["status"] == "new" and machine["architecture"] == "i386/generic"
    assert machine["zone"] == "default" and machine["pool"] == "default"
    # boot repeats the event (another DISCOVER later): still one machine.
    assert len(await ok(await http.get("/machines"))) == 1

    # Power: the settings (password included) go to the power service, never come back.
    machine = await ok(
        await http.patch(
            f"/machines/{sid}", json={"power": {"driver": "ipmi", "settings": ipmi_sim.settings()}}
        )
    )
    assert machine["power"]["driver"] == "ipmi" and machine["power"]["bmc_id"]
    assert "password" not in machine["power"]["settings"]

    # Commission: boot purpose commissioning with a token, PXE, power on.
    machine = await ok(await http.post(f"/machines/{sid}/commission"), 202)
    assert machine["status"] == "commissioning"
    await stack.wait_machine(
        sid, "commissioning to wait for the callback", flow_step="wait_callback"
    )
    assert ipmi_sim.power == "on" and "boot pxe" in " ".join(ipmi_sim.sets)
    token = await stack.boot_token(veth.mac, "commissioning")
    report = {
        **HARDWARE,
        "interfaces": [{"name": "eth0", "mac": veth.mac}, {"name": "eth1", "mac": MAC2}],
    }
    url = f"/machines/{sid}/callback/commissioning"
    wrong = await http.post(url, json=report, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    ready = await ok(
        await http.post(url, json=report, headers={"Authorization": f"Bearer {token}"})
    )
    assert ready["status"] == "ready" and ready["cores"] == 4 and ready["memory"] == 8192
    assert ready["storage"] == 500 * 1000**3 and len(ready["interfaces"]) == 2
    # The token was good once: the callback cannot be replayed.
    replay = await http.post(url, json=report, headers={"Authorization": f"Bearer {token}"})
    assert replay.status_code == 401
    await stack.wait_machine(sid, "the machine to be powered off after commissioning", flow=None)
    assert ipmi_sim.power == "off"
    assert (await stack.boot_config(veth.mac)).purpose == "local"

    # Link eth0 to the subnet (auto: an address at deploy).
    eth0 = next(i for i in ready["interfaces"] if i["mac"] == veth.mac)
    await ok(
        await http.post(
            f"/machines/{sid}/interfaces/{eth0['id']}/links",
            json={"mode": "auto", "subnet_id": subnet.id},
        ),
        201,
    )

    # Allocate: constraints nothing meets are refused; the machine fits the others.
    too_big = await http.post("/machines/allocate", json={"cores": 64, "compose": False})
    assert too_big.status_code == 409
    allocated = await ok(
        await http.post(
            "/machines/allocate",
            json={
                "cores": 2, "memory": 4096, "architecture": "i386", "storage": "root:100",
                "interfaces": f"eth0:subnet={subnet.id}", "zone": "default", "compose": False,
            },
        )
    )  # fmt: skip
    assert allocated["system_id"] == sid and allocated["status"] == "allocated"
    assert allocated["owner"] == "admin (bootstrap)"

    # Deploy: an address from ipam, boot purpose deploy, PXE and power on.
    deploying = await ok(await http.post(f"/machines/{sid}/deploy", json={}), 202)
    assert deploying["status"] == "deploying"
    deploying = await stack.wait_machine(
        sid, "deploy to wait for the callback", flow_step="wait_callback"
    )
    [link] = next(i for i in deploying["interfaces"] if i["mac"] == veth.mac)["links"]
    assert link["ip"] is not None and link["ip"].startswith("10.213.7.")
    owned = await stack.call(ip.ADDRESS_LIST, owner_id=sid)
    assert [a.ip for a in owned.items] == [link["ip"]] and owned.items[0].mac == veth.mac
    assert ipmi_sim.power == "on"
    token = await stack.boot_token(veth.mac, "deploy")
    result = f"/machines/{sid}/callback/result"
    deployed = await ok(
        await http.post(
            result, json={"result": "success"}, headers={"Authorization": f"Bearer {token}"}
        )
    )
    assert deployed["status"] == "deployed"
    await stack.wait_machine(sid, "the deployed machine to boot locally", flow=None)
    assert (await stack.boot_config(veth.mac)).purpose == "local"

    # Release: powered off, the address back in ipam, Ready again.
    releasing = await ok(await http.post(f"/machines/{sid}/release"), 202)
    assert releasing["status"] == "releasing"
    released = await stack.wait_machine(sid, "the release to finish", status="ready", flow=None)
    assert released["owner"] is None and ipmi_sim.power == "off"
    assert (await stack.call(ip.ADDRESS_LIST, owner_id=sid)).items == []

    history = [
        (h["previous"], h["status"]) for h in await ok(await http.get(f"/machines/{sid}/history"))
    ]
    assert history == [
        ("new", "commissioning"), ("commissioning", "ready"), ("ready", "allocated"),
        ("allocated", "deploying"), ("deploying", "deployed"), ("deployed", "releasing"),
        ("releasing", "ready"),
    ]  # fmt: skip

    # Every step was an event: the api's own log has them, in order.
    async def logged() -> list[str] | None:
        page = await ok(
            await http.get("/events", params={"type": "io.metalbus.api.machine.*", "limit": 500})
        )
        steps = [e["data"]["step"] for e in page["items"] if e["type"].endswith("machine.step.v1")]
        return steps if "released" in steps else None

    steps = await async_wait_for(logged, 15, "the flow's events in the event log")
    assert {
        "boot_config",
        "power_on",
        "allocate_ips",
        "power_off",
        "release_ips",
        "boot_local",
    } <= set(steps)
