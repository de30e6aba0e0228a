"""A deploying machine's boot progress from boot's TFTP and HTTP boot events, on real services.

The machine's NIC is a veth in a namespace: busybox udhcpc gets it a lease from the boot
service's DHCP server, then curl (in the namespace, from that address) fetches the
machine's pxelinux config and kernel over TFTP and its initrd over HTTP boot, as a PXE
client would. Boot names the MAC and purpose on its events; the api records each step on
the machine and as a ``machine.boot_progress`` event, and a machine fetching files is not
timed out. A fetch from an address without a lease makes an event without a MAC and
changes no machine.
"""

from __future__ import annotations

import socket
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nats.aio.msg import Msg

from metalbus.api.machines.flows import FlowDriver
from metalbus.api.settings import ApiSettings
from metalbus.shared.contract import boot as b
from metalbus.shared.contract import machines as m
from metalbus.shared.db import Database
from metalbus.shared.events import decode_event, utcnow
from tests.boot.test_real_clients import SERVER_IP, UDHCPC_SCRIPT, Veth, script
from tests.boot.test_tftp_events import curl
from tests.boot.test_tftp_real_clients import run
from tests.helpers import async_wait_for
from tests.machines.conftest import FAST, Stack, ok, ready_machine
from tests.power.conftest import IpmiSim, free_port

KERNEL = "ephemeral/amd64/vmlinuz"
INITRD = "ephemeral/amd64/initrd.img"


async def collect(stack: Stack, subject: str) -> list[Any]:
    """The payloads of the events published on ``subject`` from now on."""
    seen: list[Any] = []

    async def add(msg: Msg) -> None:
        seen.append(decode_event(msg.data).data)

    await stack.bus.subscribe_events(subject, add)
    return seen


async def test_deploy_progress_from_real_tftp_and_http_fetches(
    stack: Stack, veth: Veth, ipmi_sim: IpmiSim, tmp_path: Path
) -> None:
    root = tmp_path / "resources"
    (root / "ephemeral/amd64").mkdir(parents=True)
    (root / KERNEL).write_bytes(b"\x7fkernel" * 3000)
    (root / INITRD).write_bytes(b"\x1finitrd" * 5000)
    (root / "other.bin").write_bytes(b"not a boot file")
    tftp_port, http_port = free_port(), free_port(socket.SOCK_STREAM)
    await stack.serve_dhcp("10.213.7.0/24", SERVER_IP, "10.213.7.100", "10.213.7.150")
    await stack.start_boot(
        dhcp_interfaces=[veth.host],
        tftp_address=SERVER_IP,
        tftp_port=tftp_port,
        http_boot_address=SERVER_IP,
        http_boot_port=http_port,
        boot_resources_dir=root,
    )
    await stack.start_api(ephemeral_kernel=KERNEL, ephemeral_initrd=INITRD)
    tftp_events = await collect(stack, "metalbus.evt.boot.tftp.>")
    http_events = await collect(stack, b.HttpBootFileServed.subject())
    progress = await collect(stack, m.MachineBootProgress.subject())

    sid = await ready_machine(stack, {"driver": "ipmi", "settings": ipmi_sim.settings()}, veth.mac)
    await ok(await stack.http.post("/machines/allocate", json={"system_id": sid}))
    await ok(await stack.http.post(f"/machines/{sid}/deploy"), 202)
    deploying = await stack.wait_machine(
        sid, "deploy to wait for the callback", flow_step="wait_callback"
    )
    assert deploying["boot_progress"] is None

    # From the server's own address (no lease here): an event without a MAC, no progress.
    out = tmp_path / "out"
    tftp = f"tftp://{SERVER_IP}:{tftp_port}"
    code, output = await run(curl(), "-sS", "-o", str(out), f"{tftp}/{KERNEL}")
    assert code == 0, output
    [anonymous] = await async_wait_for(lambda: tftp_events or None, 15, "the kernel's event")
    assert anonymous.client_ip == SERVER_IP and anonymous.mac is None
    assert anonymous.purpose is None and anonymous.file_kind == "kernel"
    await async_wait_for(
        lambda: stack.consumer_idle("boot", "api-boot_progress_tftp"), 15, "the api to see it"
    )
    unchanged = await stack.machine(sid)
    assert unchanged["boot_progress"] is None and unchanged["updated_at"] == deploying["updated_at"]

    # The machine's NIC gets a lease, then fetches as pxelinux does.
    netns = ["ip", "netns", "exec", veth.namespace]
    log = tmp_path / "udhcpc.log"
    udhcpc = script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT, log)
    code, output = await run(
        *netns, "busybox", "udhcpc", "-i", veth.peer, "-s", str(udhcpc), "-n", "-q",
        "-t", "10", "-T", "1",
    )  # fmt: skip
    assert code == 0, output
    leased = next(line.split("ip=")[1].split()[0] for line in log.read_text().splitlines()
                  if line.startswith("bound"))  # fmt: skip

    config = "pxelinux.cfg/01-" + veth.mac.replace(":", "-")
    for name, step in ((config, "config fetched"), (KERNEL, "kernel fetched")):
        code, output = await run(*netns, curl(), "-sS", "-o", str(out), f"{tftp}/{name}")
        assert code == 0, output
        await stack.wait_machine(sid, f"progress: {step}", boot_progress=step)
    code, output = await run(
        *netns, curl(), "-sSf", "-o", str(out), f"http://{SERVER_IP}:{http_port}/boot/{INITRD}"
    )
    assert code == 0, output
    code, output = await run(
        *netns, curl(), "-sSf", "-o", str(out), f"http://{SERVER_IP}:{http_port}/boot/other.bin"
    )
    assert code == 0, output
    booting = await stack.wait_machine(sid, "progress: initrd", boot_progress="initrd fetched")
    assert booting["status"] == "deploying" and booting["flow_step"] == "wait_callback"

    # boot's events name the machine: its MAC and purpose, and what each file is to it.
    fetched = [e for e in tftp_events if e.client_ip == leased]
    assert [(e.filename, e.mac, e.purpose, e.file_kind) for e in fetched] == [
        (config, veth.mac, "deploy", "config"),
        (KERNEL, veth.mac, "deploy", "kernel"),
    ]
    # HTTP boot: the initrd only (other.bin is no boot file).
    [served] = http_events
    assert served.filename == INITRD and served.client_ip == leased
    assert served.mac == veth.mac and served.file_kind == "initrd"
    assert served.size == (root / INITRD).stat().st_size
    # The api's events, one per step, none about the anonymous fetch.
    await async_wait_for(lambda: len(progress) >= 3, 15, "the api's progress events")
    assert [(p.system_id, p.progress, p.via, p.status) for p in progress] == [
        (sid, "config fetched", "tftp", "deploying"),
        (sid, "kernel fetched", "tftp", "deploying"),
        (sid, "initrd fetched", "http", "deploying"),
    ]

    # A machine that fetched boot files lately is not stuck: the time-out counts from its
    # last fetch. (A driver of its own on the api's database, with a time-out between the
    # status change and the last fetch, then one past both.)
    url, schema = stack.databases["api"]
    db = Database(url, schema=schema)
    try:
        settings = ApiSettings(
            nats_url=stack.nats.url, database_url=url, database_schema=schema, **FAST
        )
        driver = FlowDriver(SimpleNamespace(db=db), settings)  # type: ignore[arg-type]
        now = utcnow()
        since_status = (now - datetime.fromisoformat(booting["status_changed_at"])).total_seconds()
        since_fetch = (now - datetime.fromisoformat(booting["boot_progress_at"])).total_seconds()
        assert since_status > since_fetch
        between = (since_status + since_fetch) / 2
        assert await driver.time_out({m.MachineStatus.DEPLOYING: between}) == 0
        assert await driver.time_out({m.MachineStatus.DEPLOYING: since_fetch / 2}) == 1
    finally:
        await db.dispose()
    failed = await stack.machine(sid)
    assert failed["status"] == "failed_deployment" and failed["boot_progress"] is None
