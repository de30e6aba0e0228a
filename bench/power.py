"""Power polling benchmark: a full sweep of 100 and of 1000 IPMI BMCs on loopback.

The BMCs are pyghmi's BMC server class (``tests/power/bmc_farm.py``), spread over a few
helper processes, each BMC on its own loopback address (127.<farm>.<x>.<y>, so each is its
own "host" for the per-host limit), BMC ``i`` on when ``i`` is even.

Two pollers sweep the same BMCs in the same run:

- **metalbus**: the power service itself (real nats-server, SQLite, the runtime), its BMCs
  registered over the bus, its :class:`~metalbus.power.poller.Poller` swept directly: the
  first sweep logs in to every BMC and records every state (N ``state.changed`` events); the
  next ones are what every interval costs.
- **MAAS model**: what MAAS does every 15 s tick: query every BMC with at most 5 queries at
  once, one ``ipmitool -I lanplus`` process per query (MAAS runs ``ipmipower``, also a
  process with a fresh login per query).

For each: sweep seconds, errors, CPU seconds (the poller's process and its children; the
BMC farms' CPU is listed apart), and false state changes (any state that differs from what
the BMC holds, or any change after the first sweep). Target: 1000 BMCs swept in under 10 s
on 2 cores with no false change. A report, not a test: exits 0 whatever the figures.

Run: ``make bench-power`` or ``.venv/bin/python bench/power.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from metalbus.cli.up import free_port, port_open, wait_until
from metalbus.power.service import PowerService, make_definition
from metalbus.power.settings import PowerSettings
from metalbus.shared.contract import power as p
from metalbus.shared.runtime import ServiceRuntime

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
FARM = REPO / "tests" / "power" / "bmc_farm.py"
PASSWORD = "password"
TARGET_S = 10.0


@dataclass
class Bmc:
    address: str
    port: int
    on: bool


@dataclass
class Row:
    poller: str
    bmcs: int
    sweep: str
    seconds: float
    ok: int
    errors: int
    false_changes: int
    cpu_s: float
    note: str = ""


def cpu_now() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def farms(count: int, processes: int) -> Any:
    """Start the BMC farm processes; yields (bmcs, pids)."""
    procs: list[subprocess.Popen[str]] = []
    bmcs: list[Bmc] = []
    try:
        per = -(-count // processes)
        for n in range(processes):
            size = min(per, count - n * per)
            if size <= 0:
                break
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(FARM),
                    "--count",
                    str(size),
                    "--spread",
                    str(n + 10),
                    "--password",
                    PASSWORD,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            assert proc.stdout is not None
            ports = [int(x) for x in proc.stdout.readline().split()[1:]]
            addresses = proc.stdout.readline().split()[1:]
            bmcs += [
                Bmc(a, port, i % 2 == 0)
                for i, (a, port) in enumerate(zip(addresses, ports, strict=True))
            ]
        yield bmcs, [proc.pid for proc in procs]
    finally:
        for proc in procs:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def nats_server(folder: Path) -> Any:
    port = free_port("127.0.0.1")
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or "nats-server"
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(folder / "nats")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_until(lambda: port_open("127.0.0.1", port), 20):
            raise SystemExit("nats-server did not start")
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def metalbus_sweeps(
    bmcs: list[Bmc], nats_url: str, folder: Path, args: argparse.Namespace
) -> list[Row]:
    settings = PowerSettings(
        nats_url=nats_url,
        database_url=f"sqlite:///{folder}/power-{len(bmcs)}.db",
        secret_key=Fernet.generate_key().decode(),
        poll_enabled=False,
        poll_concurrency=args.concurrency,
        poll_per_host=args.per_host,
        poll_jitter_s=args.jitter,
        driver_threads=args.concurrency,
        query_timeout_s=10.0,
    )
    parts: list[PowerService] = []
    rt = ServiceRuntime(make_definition(parts.append), settings)
    await rt.start()
    rows = []
    try:
        ids: dict[int, Bmc] = {}
        for start in range(0, len(bmcs), 100):
            created = await asyncio.gather(
                *(
                    rt.bus.request(
                        p.BMC_CREATE,
                        p.BmcCreate(
                            name=f"bmc{i}",
                            driver=p.DriverName.IPMI,
                            settings={
                                "address": b.address,
                                "port": b.port,
                                "username": "admin",
                                "password": PASSWORD,
                            },
                        ),
                    )
                    for i, b in enumerate(bmcs[start : start + 100], start)
                )
            )
            ids.update({c.id: b for c, b in zip(created, bmcs[start : start + 100], strict=True)})
        poller = parts[0].poller
        for n in range(args.sweeps):
            cpu = cpu_now()
            report = await poller.sweep()
            cpu = cpu_now() - cpu
            page = await rt.bus.request(p.BMC_LIST, p.BmcQuery(limit=1000))
            items = list(page.items)
            while page.next is not None:
                page = await rt.bus.request(p.BMC_LIST, p.BmcQuery(after=page.next, limit=1000))
                items += page.items
            wrong = sum(
                1
                for b in items
                if b.power_state is not p.PowerState.UNKNOWN
                and (b.power_state is p.PowerState.ON) != ids[b.id].on
            )
            false = wrong + (report.changed if n else 0)
            rows.append(
                Row(
                    "metalbus",
                    len(bmcs),
                    "first (logins)" if n == 0 else f"#{n + 1}",
                    report.seconds,
                    report.ok,
                    report.failed,
                    false,
                    cpu,
                    "; ".join(report.errors[:1]),
                ),
            )
    finally:
        await rt.stop()
    return rows


async def maas_sweep(bmcs: list[Bmc], args: argparse.Namespace) -> Row:
    slots = asyncio.Semaphore(args.maas_concurrency)
    errors: list[str] = []
    false = 0

    async def one(b: Bmc) -> None:
        nonlocal false
        async with slots:
            proc = await asyncio.create_subprocess_exec(
                "ipmitool",
                "-I",
                "lanplus",
                "-C",
                "3",
                "-H",
                b.address,
                "-p",
                str(b.port),
                "-U",
                "admin",
                "-P",
                PASSWORD,
                "-R",
                "2",
                "-N",
                "2",
                "chassis",
                "power",
                "status",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
        text = out.decode()
        if proc.returncode != 0 or "Chassis Power is" not in text:
            errors.append(err.decode().strip()[:120])
        elif ("is on" in text) != b.on:
            false += 1

    cpu = cpu_now()
    started = time.monotonic()
    await asyncio.gather(*(one(b) for b in bmcs))
    seconds = time.monotonic() - started
    ticks = -(-seconds // args.maas_tick)
    note = f"fits one {args.maas_tick:g}s tick" if ticks <= 1 else f"needs {ticks:.0f} ticks"
    if errors:
        note += f"; first error: {errors[0]}"
    return Row(
        "MAAS model",
        len(bmcs),
        "every tick",
        seconds,
        len(bmcs) - len(errors),
        len(errors),
        false,
        cpu_now() - cpu,
        note,
    )


def print_table(rows: list[Row], farm_cpu: dict[int, float]) -> None:
    head = (
        f"{'poller':<11} {'BMCs':>5} {'sweep':<15} {'seconds':>8} {'ok':>5} {'errors':>6} "
        f"{'false':>5} {'cpu s':>6}  note"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.poller:<11} {r.bmcs:>5} {r.sweep:<15} {r.seconds:>8.2f} {r.ok:>5} {r.errors:>6} "
            f"{r.false_changes:>5} {r.cpu_s:>6.2f}  {r.note}"
        )
    for size, cpu in farm_cpu.items():
        print(f"BMC farm CPU during the {size}-BMC run (all sweeps, both pollers): {cpu:.2f} s")
    for r in rows:
        if r.poller == "metalbus" and r.bmcs >= 1000 and r.sweep != "first (logins)":
            verdict = "PASS" if r.seconds < TARGET_S and r.false_changes == 0 else "MISS"
            print(f"target: 1000 BMCs in < {TARGET_S:g} s, no false change ({r.sweep}): {verdict}")


async def main_async(args: argparse.Namespace) -> int:
    if shutil.which("ipmitool") is None:
        print("ipmitool is missing (scripts/install-system-packages.sh installs it)")
        return 1
    rows: list[Row] = []
    farm_cpu: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="metalbus-bench-power-") as tmp:
        folder = Path(tmp)
        with nats_server(folder) as nats_url:
            for size in args.sizes:
                with farms(size, args.farms) as (bmcs, pids):
                    before = sum(proc_cpu(pid) for pid in pids)
                    rows += await metalbus_sweeps(bmcs, nats_url, folder, args)
                    rows.append(await maas_sweep(bmcs, args))
                    farm_cpu[size] = sum(proc_cpu(pid) for pid in pids) - before
    print_table(rows, farm_cpu)
    if not args.no_save:
        out = BENCH_DIR / "results" / f"power-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "settings": vars(args),
                    "rows": [asdict(r) for r in rows],
                    "farm_cpu_s": farm_cpu,
                    "cores": os.cpu_count(),
                },
                indent=2,
            )
        )
        print(f"saved {out.relative_to(REPO)}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--sweeps", type=int, default=3, help="metalbus sweeps per size")
    parser.add_argument("--farms", type=int, default=4, help="BMC farm processes")
    parser.add_argument("--concurrency", type=int, default=64, help="metalbus poll_concurrency")
    parser.add_argument("--per-host", type=int, default=2, help="metalbus poll_per_host")
    parser.add_argument("--jitter", type=float, default=1.0, help="metalbus poll_jitter_s")
    parser.add_argument("--maas-tick", type=float, default=15.0)
    parser.add_argument("--maas-concurrency", type=int, default=5)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
