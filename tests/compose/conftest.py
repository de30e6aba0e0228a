"""A compose service and an ipam beside it on a real nats-server and real databases, with
libvirt's test driver loading the host files in ``hosts/``.

The test driver keeps a custom host's state in the connection that loaded it, so tests
reach the host through the service's own connection (``ComposeUnderTest.virsh``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.fernet import Fernet
from nats.aio.msg import Msg
from pydantic import BaseModel, RootModel, ValidationError

from metalbus.compose.service import ComposeService, make_definition
from metalbus.compose.settings import ComposeSettings
from metalbus.compose.virt import HostAccess
from metalbus.ipam.service import DEFINITION as IPAM
from metalbus.ipam.settings import IpamSettings
from metalbus.shared import subjects
from metalbus.shared.bus import Bus
from metalbus.shared.commands import Command
from metalbus.shared.contract import ipam as ip
from metalbus.shared.events import RawEvent, decode_raw
from metalbus.shared.runtime import ServiceRuntime
from tests.compose.qemu import Libvirtd, QemuHost
from tests.conftest import DatabaseFactory
from tests.helpers import NatsServer, async_wait_for

HOSTS = Path(__file__).resolve().parent / "hosts"
KVM = f"test://{HOSTS / 'kvm.xml'}"
NONET = f"test://{HOSTS / 'nonet.xml'}"
T = TypeVar("T")


@dataclass
class Net:
    """The ipam objects the host's interfaces and networks sit on."""

    fabric: int
    untagged: int  # vid 0: br0 (10.0.0.0/24), metalbus DHCP on
    storage: int  # vid 20 in space `storage`: br1, bond0, eth4 (10.1.0.0/24)
    dmz: int  # vid 30 in space `dmz`: eth3 (10.2.0.0/24)
    maas: int  # vid 40: libvirt's `maas` network (192.168.123.0/24), DHCP off
    subnets: dict[str, int]


@dataclass
class ComposeUnderTest:
    """compose + ipam, a client bus, the compose service's parts, and its events."""

    rt: ServiceRuntime
    ipam: ServiceRuntime
    bus: Bus
    service: ComposeService
    events: list[RawEvent] = field(default_factory=list)

    async def call(self, command: Command[Any, Any], **fields: Any) -> Any:
        """Send a command; fields the model refuses go as they are, for the service to refuse."""
        try:
            payload: BaseModel = command.request.model_validate(fields)
        except ValidationError:
            payload = RootModel[dict[str, Any]](fields)
        return await self.bus.request(command, payload)

    async def virsh(self, uri: str, work: Callable[[Any], T]) -> T:
        """Run ``work(connection)`` on the service's own libvirt connection to ``uri``."""
        return await self.service.libvirt.run(HostAccess(uri), work)

    def of_type(self, name: str) -> list[RawEvent]:
        return [e for e in self.events if e.type == f"io.metalbus.compose.{name}.v1"]

    async def wait_event(self, name: str, count: int = 1) -> list[RawEvent]:
        async def arrived() -> list[RawEvent] | None:
            found = self.of_type(name)
            return found if len(found) >= count else None

        result: list[RawEvent] = await async_wait_for(arrived, 10, f"{count} {name} event(s)")
        return result

    async def network(self, *, untagged_dhcp: bool = True, maas_dhcp: bool = False) -> Net:
        """Build the ipam side of the host (see :class:`Net`)."""
        call = self.call
        fabric = await call(ip.FABRIC_CREATE, name="dc1")
        storage_space = await call(ip.SPACE_CREATE, name="storage")
        dmz_space = await call(ip.SPACE_CREATE, name="dmz")
        vlans = {0: fabric.default_vlan_id}
        for vid, space in ((20, storage_space.id), (30, dmz_space.id), (40, None)):
            vlans[vid] = (
                await call(ip.VLAN_CREATE, fabric_id=fabric.id, vid=vid, space_id=space)
            ).id
        subnets = {}
        for cidr, vid in (
            ("10.0.0.0/24", 0),
            ("10.1.0.0/24", 20),
            ("10.2.0.0/24", 30),
            ("192.168.123.0/24", 40),
        ):
            subnets[cidr] = (await call(ip.SUBNET_CREATE, cidr=cidr, vlan_id=vlans[vid])).id
        for cidr, vid, on in (
            ("10.0.0.0/24", 0, untagged_dhcp),
            ("192.168.123.0/24", 40, maas_dhcp),
        ):
            base = cidr.rsplit(".", 1)[0]
            await call(
                ip.RANGE_CREATE,
                subnet_id=subnets[cidr],
                type="dynamic",
                start_ip=f"{base}.100",
                end_ip=f"{base}.199",
            )
            if on:
                await call(ip.VLAN_UPDATE, id=vlans[vid], changes={"dhcp_on": True})
        return Net(fabric.id, vlans[0], vlans[20], vlans[30], vlans[40], subnets)

    async def correlate(self) -> None:
        """Make 10.0.0.2 (br0's address) an address of a machine ipam knows."""
        await self.call(
            ip.ADDRESS_ALLOCATE, ip="10.0.0.2", alloc_type="sticky", owner_type="machine",
            owner_id="kvm-machine-1",
        )  # fmt: skip


@pytest.fixture
def compose_settings() -> dict[str, Any]:
    """Settings of the compose service under test beyond the defaults (a test module
    overrides this fixture to change them)."""
    return {}


@pytest.fixture
async def compose(
    nats_server: NatsServer, db_factory: DatabaseFactory, compose_settings: dict[str, Any]
) -> AsyncIterator[ComposeUnderTest]:
    ipam_url, ipam_schema = db_factory()
    ipam = ServiceRuntime(
        IPAM,
        IpamSettings(nats_url=nats_server.url, database_url=ipam_url, database_schema=ipam_schema),
    )
    await ipam.start()
    parts: list[ComposeService] = []
    url, schema = db_factory()
    rt = ServiceRuntime(
        make_definition(parts.append),
        ComposeSettings(
            nats_url=nats_server.url,
            database_url=url,
            database_schema=schema,
            secret_key=Fernet.generate_key().decode(),
            **{"outbox_poll_s": 0.2, "libvirt_threads": 4, **compose_settings},
        ),
    )
    bus: Bus | None = None
    try:
        await rt.start()
        bus = await Bus.connect(nats_server.url, service="tests")
        under = ComposeUnderTest(rt, ipam, bus, parts[0])

        async def collect(msg: Msg) -> None:
            under.events.append(decode_raw(msg.data))

        await bus.nc.subscribe(subjects.service_events("compose"), cb=collect)
        yield under
    finally:
        if bus is not None:
            await bus.close()
        await rt.stop()
        await ipam.stop()


@pytest.fixture(scope="session")
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Libvirtd]:
    """The libvirtd on qemu:///system: the one that answers, or (as root) one started for
    this session and stopped at its end (see :mod:`tests.compose.qemu`)."""
    daemon = Libvirtd(tmp_path_factory.mktemp("libvirtd"))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def qemu_host(libvirtd: Libvirtd, tmp_path: Path) -> Iterator[QemuHost]:
    """A pool, a bridge and a ``maas`` network on the real libvirtd, all removed afterwards
    (with any VM the test left there)."""
    host = QemuHost(libvirtd, tmp_path)
    try:
        host.open()
        yield host
    finally:
        host.close()
