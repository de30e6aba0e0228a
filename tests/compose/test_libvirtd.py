"""Compose, start and decompose a VM on a real libvirtd (``qemu:///system``), checked with
libvirt itself: the domain defined with what was asked and running under QEMU, then
destroyed, undefined and its volume gone.

The set-up starts a libvirtd when none answers and the tests run as root
(:mod:`tests.compose.qemu`); otherwise the test is skipped with the reason, and in CI that
skip is a failure. Run twice: with the domain type the service picks from the host's
capabilities (KVM where libvirt offers it, else TCG), and with TCG forced.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import libvirt
import pytest

from metalbus.shared.contract import compose as c
from tests.compose.conftest import ComposeUnderTest
from tests.compose.qemu import QemuHost
from tests.helpers import async_wait_for

GIB = 1024**3


@pytest.fixture(params=["auto", "qemu"])
def compose_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    serial = tmp_path / "serial"
    serial.mkdir(exist_ok=True)
    return {"domain_type": request.param, "serial_log_dir": str(serial)}


async def test_a_vm_composed_on_a_real_libvirtd_runs_and_decomposes(
    qemu_host: QemuHost, compose: ComposeUnderTest, compose_settings: dict[str, Any]
) -> None:
    host: c.KvmHost = await compose.call(
        c.HOST_CREATE, uri=qemu_host.uri, name=f"{qemu_host.prefix}host",
        default_storage_pool=qemu_host.pool,
    )  # fmt: skip
    assert host.architecture == "amd64/generic" and host.cores >= 1
    assert qemu_host.pool in [p.name for p in host.storage_pools]
    assert "maas" in [n.name for n in host.networks]

    result: c.ComposeResult = await compose.call(
        c.VM_COMPOSE, host_id=host.id, hostname=f"{qemu_host.prefix}vm", cores=1, memory=256,
        storage=f"root:{GIB / 1000**3}", start=True,
    )  # fmt: skip
    vm = result.vms[0]
    assert vm.power_state is c.VmPowerState.ON

    seen = await asyncio.to_thread(qemu_host.domain, vm.uuid)
    assert seen is not None
    offered = await asyncio.to_thread(qemu_host.domain_types, "x86_64")
    wanted = compose_settings["domain_type"]
    expected = wanted if wanted != "auto" else ("kvm" if "kvm" in offered else "qemu")
    assert seen.type == expected, offered
    assert (seen.active, seen.state) == (True, libvirt.VIR_DOMAIN_RUNNING)
    assert (seen.vcpus, seen.memory_kib, seen.autostart) == (1, 256 * 1024, True)
    volume = f"{qemu_host.prefix}vm-root"
    assert seen.disks == [(qemu_host.pool, volume)]
    assert seen.networks == ["maas"]
    assert (await asyncio.to_thread(qemu_host.volumes)) == {volume: GIB}
    assert (qemu_host.pool_dir / volume).is_file()

    # Running means QEMU executes the guest: its CPU time grows.
    async def guest_runs() -> bool:
        now = await asyncio.to_thread(qemu_host.domain, vm.uuid)
        return now is not None and now.active and now.cpu_time_ns > seen.cpu_time_ns

    await async_wait_for(guest_runs, 30, "the guest's CPU time to grow")

    await compose.call(c.VM_DECOMPOSE, id=vm.id)
    assert await asyncio.to_thread(qemu_host.domain, vm.uuid) is None
    assert await asyncio.to_thread(qemu_host.volumes) == {}
    assert not (qemu_host.pool_dir / volume).exists()
    await compose.wait_event("vm.decomposed")
    await compose.call(c.HOST_DELETE, id=host.id)
