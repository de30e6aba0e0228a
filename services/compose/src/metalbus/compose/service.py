"""The compose service as the runtime runs it: KVM hosts and the VMs composed on them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from metalbus.shared.bus import Handler
from metalbus.shared.commands import Command
from metalbus.shared.contract import compose as contract
from metalbus.shared.runtime import ServiceDefinition, ServiceRuntime, run_service
from metalbus.shared.secrets import SecretBox, load_keys

from .composer import Composer
from .hosts import Hosts
from .ipam import Ipam
from .settings import ComposeSettings
from .virt import Libvirt

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


@dataclass
class ComposeService:
    """What the compose service is made of once started (tests and benches reach libvirt
    through it: the test driver's state lives in the service's connection)."""

    hosts: Hosts
    composer: Composer
    libvirt: Libvirt

    async def hold_libvirt(self) -> None:
        """Lives as long as the service; closes the libvirt connections at stop."""
        try:
            await asyncio.Event().wait()
        finally:
            self.libvirt.close()


def make_definition(
    on_start: Callable[[ComposeService], None] | None = None,
) -> ServiceDefinition:
    """The compose service's definition; ``on_start`` sees its parts (for tests and benches)."""

    async def setup(rt: ServiceRuntime) -> None:
        settings = rt.settings
        assert isinstance(settings, ComposeSettings)
        box = SecretBox(load_keys(settings, "compose"))
        lv = Libvirt(settings.libvirt_threads)
        ipam = Ipam(rt.bus)
        hosts = Hosts(rt.db, lv, box, ipam)
        composer = Composer(rt.db, lv, ipam, hosts, settings)
        service = ComposeService(hosts, composer, lv)
        handlers: dict[Command[Any, Any], Handler] = {
            contract.HOST_CREATE: hosts.create,
            contract.HOST_GET: hosts.get,
            contract.HOST_LIST: hosts.list_hosts,
            contract.HOST_UPDATE: hosts.update,
            contract.HOST_REFRESH: hosts.refresh,
            contract.HOST_DELETE: partial(_delete_host, hosts, composer),
            contract.VM_COMPOSE: composer.compose,
            contract.VM_DECOMPOSE: composer.decompose,
            contract.VM_GET: composer.get,
            contract.VM_LIST: composer.list_vms,
            contract.VM_XML: composer.xml,
        }
        for command, handler in handlers.items():
            rt.command(command, handler)
        rt.background(service.hold_libvirt)
        if on_start is not None:
            on_start(service)

    return ServiceDefinition(
        name="compose",
        description="KVM hosts (pods) and VM composition through libvirt",
        settings_type=ComposeSettings,
        migrations=[MIGRATIONS],
        setup=setup,
    )


async def _delete_host(
    hosts: Hosts, composer: Composer, req: contract.KvmHostDelete
) -> contract.KvmHost:
    return await hosts.delete(req, composer.decompose)


DEFINITION = make_definition()


def main() -> None:
    """Run the compose service until SIGTERM or SIGINT."""
    run_service(DEFINITION)
