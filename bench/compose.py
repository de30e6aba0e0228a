"""Compose benchmark: compose + decompose a VM through the HTTP API, beside raw libvirt.

One run starts its own nats-server and the whole system through ``metalbus up`` (as
``foundation.py`` does: api, ipam, compose... on SQLite in a temporary folder), adds a KVM
host on libvirt's test driver (``test:///<work>/host.xml``: 64 cores, 256 GiB, a 100 GiB
``default`` pool, a ``maas`` network without DHCP) with ``POST /api/v1/pods``, and measures,
in interleaved rounds so that whatever else the machine does lands on every row alike:

- **api**: ``POST /pods/{id}/compose`` (1 core, 256 MiB, a 1 GB root disk, ``start``: the
  domain is defined, marked autostart and started), then ``DELETE /vms/{id}`` (destroyed,
  undefined, volume deleted): HTTP -> api -> NATS -> compose (ipam asked over NATS whether its
  DHCP serves the network, the reservation and the record in SQLite, an event through the
  outbox) -> libvirt in the compose service's thread pool.
- **service's libvirt calls**: what the compose service asks of libvirt for the same cycle,
  its own ``virt`` functions called in this process (capabilities, volume, define +
  autostart + start, pool refresh; destroy, undefine, volume delete, pool refresh): the
  libvirt part of the api row, without bus, database or HTTP.
- **raw libvirt**: ``defineXML`` + ``create`` + ``destroy`` + ``undefine`` of the very domain
  XML the service composed (read back with ``GET /vms/{id}/xml``), nothing else.

The libvirt rows open their own connection to the same host file: the test driver keeps one
in-memory host per connection, so they do not see the service's VMs, but it is the same
driver doing the same work. Every libvirt call of the benchmark runs in a worker thread,
off the event loop. Then ``--concurrency`` clients compose and decompose at once (VMs/s).

Every answer is checked (201 with one VM, 200 on decompose, and no VM left at the end). A
report, not a test: it exits 0 whether the target (api cycle p50 at most 2x raw libvirt's)
is met or not, and 1 only when the set-up fails or an answer is wrong.

Run: ``make bench-compose`` or ``.venv/bin/python bench/compose.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import libvirt
from foundation import BENCH_DIR, SetupError, percentile, start_system
from reports import positive, save_report  # bench/ is the script's directory: on sys.path

from metalbus.compose import virt
from metalbus.compose.virt import VolumePlan

GB = 1000**3
TARGET_RATIO = 2.0
HOST_XML = """<!-- the benchmark's KVM host, for libvirt's test driver -->
<node>
  <cpu>
    <mhz>2400</mhz><model>x86_64</model><active>64</active>
    <nodes>1</nodes><sockets>1</sockets><cores>32</cores><threads>2</threads>
  </cpu>
  <memory>268435456</memory>
  <network>
    <name>maas</name>
    <bridge name='virbr1'/>
    <forward mode='nat'/>
    <ip address='192.168.123.1' netmask='255.255.255.0'/>
  </network>
  <pool type='dir'>
    <name>default</name>
    <target><path>/var/lib/libvirt/images</path></target>
  </pool>
</node>
"""


class WrongAnswer(Exception):
    """An answer that is not what the API promises (the run is void)."""


def _quiet(_: object, __: object) -> None:
    """libvirt prints every error to stderr unless a handler takes it."""


libvirt.registerErrorHandler(_quiet, None)


@dataclass
class Row:
    """Timings of one way of composing and decomposing, in seconds."""

    name: str
    compose: list[float] = field(default_factory=list)
    decompose: list[float] = field(default_factory=list)
    cycle: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    round_p50s: list[float] = field(default_factory=list)

    def add(self, compose_s: float, decompose_s: float) -> None:
        self.compose.append(compose_s)
        self.decompose.append(decompose_s)
        self.cycle.append(compose_s + decompose_s)

    def summary(self) -> dict[str, Any]:
        n = len(self.cycle)
        p50 = percentile(self.cycle, 50)
        return {
            "n": n,
            "compose_p50_ms": percentile(self.compose, 50) * 1e3,
            "compose_p99_ms": percentile(self.compose, 99) * 1e3,
            "decompose_p50_ms": percentile(self.decompose, 50) * 1e3,
            "decompose_p99_ms": percentile(self.decompose, 99) * 1e3,
            "cycle_p50_ms": p50 * 1e3,
            "cycle_p99_ms": percentile(self.cycle, 99) * 1e3,
            "vms_per_s": 1 / p50 if p50 else 0.0,
            "bench_cpu_ms_per_cycle": self.cpu_s / n * 1e3 if n else 0.0,
            "round_cycle_p50_ms": [x * 1e3 for x in self.round_p50s],
        }


# -- the api row ---------------------------------------------------------------------------


class Api:
    """Compose and decompose through ``/api/v1``."""

    def __init__(self, client: httpx.AsyncClient, host_id: int) -> None:
        self.client = client
        self.host_id = host_id
        self.body = {"cores": 1, "memory": 256, "storage": "root:1", "start": True}

    async def compose(self) -> dict[str, Any]:
        response = await self.client.post(f"/pods/{self.host_id}/compose", json=self.body)
        if response.status_code != 201:
            raise WrongAnswer(f"compose: {response.status_code} {response.text[:300]}")
        vms = response.json()["vms"]
        if len(vms) != 1 or vms[0]["power_state"] != "on":
            raise WrongAnswer(f"compose: not one running VM: {response.text[:300]}")
        vm: dict[str, Any] = vms[0]
        return vm

    async def decompose(self, vm_id: int) -> None:
        response = await self.client.delete(f"/vms/{vm_id}")
        if response.status_code != 200:
            raise WrongAnswer(f"decompose: {response.status_code} {response.text[:300]}")

    async def cycle(self) -> tuple[float, float]:
        started = time.perf_counter()
        vm = await self.compose()
        composed = time.perf_counter()
        await self.decompose(vm["id"])
        return composed - started, time.perf_counter() - composed


# -- the libvirt rows (blocking: run in a worker thread) -----------------------------------


class Raw:
    """The same work on the same driver straight through libvirt-python, timed in a thread."""

    def __init__(self, uri: str, xml: str) -> None:
        self.conn = libvirt.open(uri)
        self.xml = xml

    def raw_cycles(self, n: int, row: Row) -> None:
        """defineXML + create, then destroy + undefine, of the service's domain XML."""
        for _ in range(n):
            cpu = time.process_time()
            started = time.perf_counter()
            dom = self.conn.defineXML(self.xml)
            dom.create()
            composed = time.perf_counter()
            dom.destroy()
            dom.undefine()
            row.add(composed - started, time.perf_counter() - composed)
            row.cpu_s += time.process_time() - cpu

    def service_cycles(self, n: int, row: Row) -> None:
        """The compose service's own libvirt calls for one compose and one decompose."""
        for _ in range(n):
            name = f"raw-{uuidlib.uuid4().hex[:6]}"
            plan = VolumePlan("default", f"{name}-root", GB)
            cpu = time.process_time()
            started = time.perf_counter()
            virt.domain_types(self.conn, "x86_64")
            virt.create_volume(self.conn, plan)
            dom = virt.define(self.conn, self.xml, start=True)
            virt.pools(self.conn)
            virt.power_state(dom)
            composed = time.perf_counter()
            for disk in virt.undefine(self.conn, dom.UUIDString()):
                virt.delete_volume(self.conn, disk.pool, disk.volume)
            virt.delete_volume(self.conn, plan.pool, plan.name)
            virt.pools(self.conn)
            row.add(composed - started, time.perf_counter() - composed)
            row.cpu_s += time.process_time() - cpu

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()


# -- the run ------------------------------------------------------------------------------


async def _api_chunk(api: Api, n: int, row: Row) -> None:
    for _ in range(n):
        cpu = time.process_time()
        compose_s, decompose_s = await api.cycle()
        row.cpu_s += time.process_time() - cpu
        row.add(compose_s, decompose_s)


async def _concurrently(
    cycle: Callable[[], Awaitable[tuple[float, float]]], total: int, workers: int, row: Row
) -> float:
    """``total`` cycles from ``workers`` tasks; returns the wall time."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1  # no await between test and decrement: safe on one event loop
            row.add(*await cycle())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - started


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run(args: argparse.Namespace, api_url: str, token: str, work_dir: Path) -> dict[str, Any]:
    host_file = work_dir / "host.xml"
    host_file.write_text(HOST_XML)
    uri = f"test://{host_file}"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60) as client:
        response = await client.post("/pods", json={"uri": uri, "name": "bench"})
        if response.status_code != 201:
            raise SetupError(f"POST /pods: {response.status_code} {response.text[:300]}")
        api = Api(client, response.json()["id"])
        vm = await api.compose()
        response = await client.get(f"/vms/{vm['id']}/xml")
        if response.status_code != 200:
            raise SetupError(f"GET /vms/{vm['id']}/xml: {response.status_code}")
        xml = response.json()["xml"]
        await api.decompose(vm["id"])

        raw = await asyncio.to_thread(Raw, uri, xml)
        try:
            rows = {
                "api": Row("api: POST compose + DELETE vm"),
                "service_libvirt": Row("service's libvirt calls"),
                "raw": Row("raw libvirt define+start+destroy+undefine"),
            }
            warm = Row("warm-up")
            print(f"warming up ({args.warmup} cycles each) ...", file=sys.stderr)
            await _api_chunk(api, args.warmup, warm)
            await asyncio.to_thread(raw.service_cycles, args.warmup, warm)
            await asyncio.to_thread(raw.raw_cycles, args.warmup * 10, warm)
            print(f"timing {args.vms} cycles in {args.rounds} rounds ...", file=sys.stderr)
            raw_n = _split(args.vms * args.raw_factor, args.rounds)
            for r, n in enumerate(_split(args.vms, args.rounds)):
                chunks: list[tuple[str, Callable[[Row], Awaitable[None]]]] = [
                    ("api", lambda row, n=n: _api_chunk(api, n, row)),
                    (
                        "service_libvirt",
                        lambda row, n=n: asyncio.to_thread(raw.service_cycles, n, row),
                    ),
                    ("raw", lambda row, r=r: asyncio.to_thread(raw.raw_cycles, raw_n[r], row)),
                ]
                for key, chunk in chunks[r % 3 :] + chunks[: r % 3]:
                    round_row = Row(key)
                    await chunk(round_row)
                    rows[key].compose += round_row.compose
                    rows[key].decompose += round_row.decompose
                    rows[key].cycle += round_row.cycle
                    rows[key].cpu_s += round_row.cpu_s
                    rows[key].round_p50s.append(percentile(round_row.cycle, 50))

            print(
                f"{args.concurrent_vms} cycles from {args.concurrency} concurrent clients ...",
                file=sys.stderr,
            )
            loaded = Row("api under load")
            wall = await _concurrently(api.cycle, args.concurrent_vms, args.concurrency, loaded)
        finally:
            await asyncio.to_thread(raw.close)

        left = (await client.get("/vms")).json()["items"]
        if left:
            raise WrongAnswer(f"{len(left)} VM(s) left after the run: {left[:3]}")
        await client.delete(f"/pods/{api.host_id}")

    summaries = {key: row.summary() for key, row in rows.items()}
    under_load = loaded.summary()
    under_load["vms_per_s"] = len(loaded.cycle) / wall if wall else 0.0
    under_load["concurrency"] = args.concurrency
    api_p50 = summaries["api"]["cycle_p50_ms"]
    raw_p50 = summaries["raw"]["cycle_p50_ms"]
    svc_p50 = summaries["service_libvirt"]["cycle_p50_ms"]
    ratio = api_p50 / raw_p50 if raw_p50 else float("inf")
    return {
        "rows": summaries,
        "under_load": under_load,
        "ratios": {
            "api_over_raw_p50": ratio,
            "api_over_raw_p99": summaries["api"]["cycle_p99_ms"] / summaries["raw"]["cycle_p99_ms"]
            if summaries["raw"]["cycle_p99_ms"]
            else float("inf"),
            "api_over_service_libvirt_p50": api_p50 / svc_p50 if svc_p50 else float("inf"),
            "service_libvirt_over_raw_p50": svc_p50 / raw_p50 if raw_p50 else float("inf"),
        },
        "target": {
            "rule": f"api compose+decompose p50 at most {TARGET_RATIO:g}x raw libvirt's",
            "met": ratio <= TARGET_RATIO,
        },
    }


# -- report -------------------------------------------------------------------------------


def build_report(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "benchmark": "compose",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus_usable": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "libvirt": ".".join(str(libvirt.getVersion() // 10**k % 1000) for k in (6, 3, 0)),
            "load_before": args.load_before,
            "load_after": list(os.getloadavg()),
        },
        "settings": {
            "vms": args.vms,
            "raw_factor": args.raw_factor,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "concurrent_vms": args.concurrent_vms,
            "vm": "1 core, 256 MiB, 1 GB root disk, maas network, started",
            "database": "SQLite",
        },
        **result,
    }


def print_report(report: dict[str, Any]) -> None:
    mach, s = report["machine"], report["settings"]
    print()
    print(
        f"metalbus compose benchmark: {mach['cpus_usable']} CPUs, Python {mach['python']}, "
        f"libvirt {mach['libvirt']} test driver, {s['database']}; VM: {s['vm']}"
    )
    print(
        f"load average (1 min) {mach['load_before'][0]:.2f} before, "
        f"{mach['load_after'][0]:.2f} after"
    )
    print()
    head = (
        f"{'':<44}{'n':>6}{'compose p50':>13}{'p99':>8}{'decomp p50':>12}{'p99':>8}"
        f"{'cycle p50':>11}{'p99':>8}{'VMs/s':>9}{'bench cpu':>11}"
    )
    print(head)
    print("-" * len(head))
    names = {
        "api": "api: POST compose + DELETE vm",
        "service_libvirt": "the service's libvirt calls, direct",
        "raw": "raw libvirt define+start+destroy+undefine",
    }
    load = report["under_load"]
    for key, r in [*report["rows"].items(), ("under_load", load)]:
        label = names.get(key, f"api, {load['concurrency']} clients at once")
        cpu = "-" if key == "under_load" else f"{r['bench_cpu_ms_per_cycle']:.3f}"
        print(
            f"{label:<44}{r['n']:>6}{r['compose_p50_ms']:>13.3f}{r['compose_p99_ms']:>8.3f}"
            f"{r['decompose_p50_ms']:>12.3f}{r['decompose_p99_ms']:>8.3f}"
            f"{r['cycle_p50_ms']:>11.3f}{r['cycle_p99_ms']:>8.3f}{r['vms_per_s']:>9.1f}"
            f"{cpu:>11}"
        )
    print()
    print(
        "ms throughout; cycle: compose + decompose of one VM; VMs/s: cycles per second (one at "
        "a time: 1/p50; under load: measured); bench cpu: the benchmark process's own CPU per "
        "cycle (the libvirt rows do their work in it)."
    )
    q = report["ratios"]
    print()
    print(
        f"api / raw libvirt: {q['api_over_raw_p50']:.1f}x (p50), {q['api_over_raw_p99']:.1f}x "
        f"(p99); api / the service's libvirt calls {q['api_over_service_libvirt_p50']:.1f}x; "
        f"the service's libvirt calls / raw {q['service_libvirt_over_raw_p50']:.1f}x"
    )
    per_round = ", ".join(
        f"{a / b:.1f}x"
        for a, b in zip(
            report["rows"]["api"]["round_cycle_p50_ms"],
            report["rows"]["raw"]["round_cycle_p50_ms"],
            strict=True,
        )
        if b
    )
    print(f"  per round (p50): {per_round}")
    t = report["target"]
    print(f"target: {t['rule']}: {'PASS' if t['met'] else 'MISS'}")


# -- entry point --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/compose.py",
        description="Compose + decompose through the API beside raw libvirt on the test "
        "driver (a report, not a test).",
    )
    parser.add_argument("--vms", type=positive, default=200, help="timed api cycles (200)")
    parser.add_argument(
        "--raw-factor",
        type=positive,
        default=10,
        help="raw libvirt cycles per api cycle (10: they take microseconds)",
    )
    parser.add_argument("--warmup", type=int, default=20, help="untimed cycles first (20)")
    parser.add_argument("--rounds", type=positive, default=4, help="interleaved rounds (4)")
    parser.add_argument(
        "--concurrency", type=positive, default=4, help="clients at once under load (4)"
    )
    parser.add_argument(
        "--concurrent-vms", type=positive, default=100, help="cycles under load (100)"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=BENCH_DIR / "results",
        help="where the JSON report goes (bench/results)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON report")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (logs, databases)"
    )
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_before = list(os.getloadavg())
    signal.signal(signal.SIGTERM, _raise_interrupt)
    work_dir = Path(tempfile.mkdtemp(prefix="metalbus-bench-compose-"))
    stack = contextlib.ExitStack()
    if args.keep:
        stack.callback(print, f"kept {work_dir}", file=sys.stderr)
    else:
        stack.callback(shutil.rmtree, work_dir, ignore_errors=True)
    try:
        system = start_system(stack, work_dir)
        result = asyncio.run(run(args, system.api_url + "/api/v1", system.token, work_dir))
        report = build_report(args, result)
        print_report(report)
        if not args.no_save:
            print(f"\nsaved {save_report(report, args.results_dir, 'compose')}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (SetupError, WrongAnswer) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping everything ...", file=sys.stderr)
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
