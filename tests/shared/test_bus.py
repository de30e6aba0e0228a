"""Request/reply on a real nats-server: queue groups, fail-over, typed errors, timeouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from metalbus.shared.bus import Bus, _decode_reply
from metalbus.shared.commands import Empty, ping
from metalbus.shared.errors import Conflict, RequestTimeout, ServiceUnavailable, ValidationFailed
from metalbus.shared.runtime import ServiceRuntime
from metalbus.shared.settings import ServiceSettings
from tests.echo_service import EchoIn, definition, echo
from tests.helpers import NatsServer, async_wait_for

REPO = Path(__file__).resolve().parents[2]


def service_name() -> str:
    return f"echo{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_server.url, service="client")
    yield bus
    await bus.close()


class Replicas:
    """Replicas of the echo service as real processes."""

    def __init__(self, service: str, nats_url: str, tmp: Path) -> None:
        self.service, self.nats_url, self.tmp = service, nats_url, tmp
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, instance: str) -> None:
        env = {
            **os.environ,
            "METALBUS_NATS_URL": self.nats_url,
            "METALBUS_DATABASE_URL": f"sqlite:///{self.tmp / (instance + '.db')}",
            "METALBUS_HEALTH_PORT": "0",
            "METALBUS_INSTANCE_ID": instance,
        }
        log = (self.tmp / f"{instance}.log").open("wb")
        self.processes[instance] = subprocess.Popen(
            [sys.executable, "-m", "tests.echo_service", self.service],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop_all(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def replicas(nats_server: NatsServer, tmp_path: Path) -> Iterator[Replicas]:
    group = Replicas(service_name(), nats_server.url, tmp_path)
    yield group
    group.stop_all()


async def wait_for_instances(client: Bus, service: str, instances: set[str]) -> None:
    """Wait until every replica has joined the queue group (asking until each has answered)."""
    seen: set[str] = set()

    async def all_answered() -> bool:
        try:
            seen.add((await client.request(echo(service), EchoIn(text="hi"))).instance)
        except (ServiceUnavailable, RequestTimeout):
            pass
        return seen >= instances

    await async_wait_for(all_answered, 60, f"replicas {instances} to answer")


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_two_replicas_split_the_load_and_survive_one_stopping(
    client: Bus, replicas: Replicas, how: str
) -> None:
    replicas.start("a")
    replicas.start("b")
    service = replicas.service
    await wait_for_instances(client, service, {"a", "b"})

    answered = Counter(
        [(await client.request(echo(service), EchoIn(text=str(i)))).instance for i in range(200)]
    )
    assert set(answered) == {"a", "b"}, answered
    assert min(answered.values()) > 20, f"queue group did not spread the load: {answered}"

    proc = replicas.processes["a"]
    proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    proc.wait(20)

    after: Counter[str] = Counter()
    retried = 0
    for i in range(100):
        try:
            reply = await client.request(echo(service), EchoIn(text=str(i)))
        except RequestTimeout:
            # A request caught in flight by a replica killed outright gets one retry.
            assert how == "sigkill"
            retried += 1
            reply = await client.request(echo(service), EchoIn(text=str(i)))
        assert reply.text == str(i)
        after[reply.instance] += 1
    assert after == Counter({"b": 100})
    assert retried <= 1


async def test_typed_errors_cross_the_bus(
    nats_server: NatsServer, client: Bus, tmp_path: Path
) -> None:
    service = service_name()
    rt = ServiceRuntime(
        definition(service),
        ServiceSettings(nats_url=nats_server.url, database_url=f"sqlite:///{tmp_path / 'e.db'}"),
    )
    await rt.start()
    try:
        with pytest.raises(Conflict) as conflict:
            await client.request(echo(service), EchoIn(text="x", fail=True))
        assert conflict.value.field == "fail"

        # A malformed request (sent raw, as a foreign client would) gets a typed 422 back.
        msg = await client.nc.request(echo(service).subject, b'{"text": 5}', timeout=2)
        assert msg.headers["Nats-Service-Error-Code"] == "422"
        with pytest.raises(ValidationFailed) as invalid:
            _decode_reply(echo(service), msg)
        assert invalid.value.field == "text"

        with pytest.raises(RequestTimeout):
            await client.request(echo(service), EchoIn(text="slow", delay=0.8), timeout=0.3)

        pong = await client.request(ping(service), Empty())
        assert pong.service == service
    finally:
        await rt.stop()

    with pytest.raises(ServiceUnavailable):
        await client.request(echo(service), EchoIn(text="nobody home"))


async def test_request_on_a_closed_bus_is_unavailable(nats_server: NatsServer) -> None:
    bus = await Bus.connect(nats_server.url, service="client")
    await bus.close()
    with pytest.raises(ServiceUnavailable):
        await bus.request(ping("ipam"), Empty())


async def test_connect_gives_up_cleanly_when_nats_is_absent() -> None:
    with pytest.raises(ServiceUnavailable):
        await Bus.connect("nats://127.0.0.1:1", service="client", connect_deadline=0.5)


async def test_services_are_discoverable_through_nats_micro(
    nats_server: NatsServer, client: Bus, tmp_path: Path
) -> None:
    """$SRV.PING / INFO / STATS come with nats.micro: `nats micro ls` and friends see us."""
    import json

    from metalbus.shared import subjects

    service = service_name()
    settings = ServiceSettings(
        nats_url=nats_server.url,
        database_url=f"sqlite:///{tmp_path / 'd.db'}",
        instance_id="replica-1",
    )
    rt = ServiceRuntime(definition(service), settings)
    await rt.start()
    try:
        name = subjects.queue_group(service)
        info = json.loads((await client.nc.request(f"$SRV.INFO.{name}", b"", timeout=2)).data)
        assert info["name"] == name and info["metadata"]["instance"] == "replica-1"
        endpoints = {e["subject"]: e["queue_group"] for e in info["endpoints"]}
        assert endpoints == {
            echo(service).subject: name,
            ping(service).subject: name,
            subjects.command_subject(service, "status"): name,
        }
        await client.request(echo(service), EchoIn(text="counted"))
        stats = json.loads((await client.nc.request(f"$SRV.STATS.{name}", b"", timeout=2)).data)
        counted = {e["subject"]: e["num_requests"] for e in stats["endpoints"]}
        assert counted[echo(service).subject] == 1
    finally:
        await rt.stop()
