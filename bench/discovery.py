"""Discovery benchmark: ARP observation ingest, and the time to scan a /24 beside nmap.

Everything runs inside network namespaces this benchmark creates (one peer namespace joined
to this host by two veth pairs) and is deleted at the end, on errors and Ctrl-C too. The
discovery service itself (real nats-server, SQLite, the runtime, on uvloop as in
production) runs in this process and listens on the host's ends. Needs root.

- **ingest**: a sender process inside the peer namespace (``bench/arp_sender.py``) writes
  gratuitous ARP frames into
  its end of the first pair (an AF_PACKET socket, paced at each rate of ``--rates``, or as
  fast as it can for rate 0) for ``--seconds`` per rate. After the sender is done and the
  listener has settled, the frames the service recorded (its
  ``metalbus_discovery_frames_total{kind="arp_gratuitous"}``) are compared with those sent;
  the frames that reached the host's interface at all (its ``rx_packets``) are shown too,
  and the CPU the service's process got over the step (in cores: well under 1.0 while
  frames are lost means the machine's other work had the CPU) and per frame recorded
  (microseconds: what a frame costs, whatever the load; 1e6 / it is about what one free
  core would take without loss).
  Two kinds of traffic: **known** (``--neighbours`` addresses, already seen, sent round
  and round: each frame moves a count, no event) and **new** (every frame a neighbour
  never seen: an event each, and a row to write). The figure: the highest rate with no
  loss.
- **scan**: the peer namespace's end of the second pair holds ``--answering`` addresses of
  a /24 (its kernel answers ARP for them). The service scans the /24 (``scan_start`` over
  the bus, timed from the scan's own start to finish, and from the request until a client
  polling ``scan_get`` sees it done), beside ``nmap -sn`` (an ARP ping sweep, as root on a
  local Ethernet) of the same /24 on the same interface, interleaved, ``--repeats`` times
  each; the neighbour cache is flushed before each. Printed: the medians, the addresses
  found, and metalbus's time / nmap's.

A report, not a test: exits 0 whatever the figures. Results also go to
``bench/results/discovery-<UTC timestamp>.json`` (``--no-save`` skips it).

Run: ``make bench-discovery`` or ``.venv/bin/python bench/discovery.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop
from power import nats_server  # bench/power.py's: a nats-server with JetStream
from sqlalchemy import text

from metalbus.discovery.service import DEFINITION
from metalbus.discovery.settings import DiscoverySettings
from metalbus.shared.contract import discovery as d
from metalbus.shared.runtime import ServiceRuntime

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SENDER = BENCH_DIR / "arp_sender.py"
SCAN_NET = ipaddress.IPv4Network("10.215.0.0/24")
SCAN_HOST = "10.215.0.1"
NEW_BASE = int(ipaddress.IPv4Address("10.216.0.0"))  # new neighbours: 10.216.0.0/13
KNOWN_BASE = int(ipaddress.IPv4Address("10.214.0.0"))  # known neighbours: 10.214.0.0/16
FRAMES = "metalbus_discovery_frames_total"


# -- namespaces -----------------------------------------------------------------------------


@dataclass
class Pair:
    host: str  # this host's end, where the service listens
    peer: str  # the peer namespace's end


def ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def namespace(args: argparse.Namespace) -> Iterator[tuple[str, Pair, Pair]]:
    """The peer namespace with the ingest pair and the scan pair; all deleted afterwards."""
    tag = uuid.uuid4().hex[:6]
    name = f"mbbench-{tag}"
    ingest, scan = Pair(f"mbb{tag}ih", f"mbb{tag}ip"), Pair(f"mbb{tag}sh", f"mbb{tag}sp")
    try:
        ip("netns", "add", name)
        for pair in (ingest, scan):
            ip("link", "add", pair.host, "type", "veth", "peer", "name", pair.peer)
            ip("link", "set", pair.peer, "netns", name)
            ip("link", "set", pair.host, "up")
            ip("-n", name, "link", "set", pair.peer, "up")
        ip("addr", "add", f"{SCAN_HOST}/24", "dev", scan.host)
        hosts = [h for h in SCAN_NET.hosts() if str(h) != SCAN_HOST]
        step = max(1, len(hosts) // args.answering)
        for address in hosts[::step][: args.answering]:
            ip("-n", name, "addr", "add", f"{address}/24", "dev", scan.peer)
        yield name, ingest, scan
    finally:
        for pid in subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True
        ).stdout.split():
            os.kill(int(pid), signal.SIGKILL)  # a sender left running by an interruption
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        for pair in (ingest, scan):
            subprocess.run(["ip", "link", "del", pair.host], capture_output=True)


def rx_packets(interface: str) -> int:
    return int(Path(f"/sys/class/net/{interface}/statistics/rx_packets").read_text())


# -- ingest ---------------------------------------------------------------------------------


@dataclass
class IngestRow:
    traffic: str  # known or new
    rate: int  # asked for (0: as fast as the sender goes)
    sent: int
    send_rate: float  # achieved by the sender
    reached: int  # frames that reached the host's interface
    recorded: int  # frames the service recorded
    lost: int
    seconds_to_settle: float  # after the sender was done, until the service had them all
    service_cores: float  # CPU of this process (the service) over the step, in cores
    cpu_us_per_frame: float  # that CPU divided by the frames recorded


async def settle(read: Callable[[], float], want: float, deadline_s: float = 30.0) -> float:
    """Poll ``read`` until it reaches ``want`` or stops moving (a deadline bounds it)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    last, still = read(), 0
    while last < want and still < 10 and loop.time() < end:
        await asyncio.sleep(0.05)  # polling the service's counter
        now = read()
        still = still + 1 if now == last else 0
        last = now
    return last


async def written(count: Callable[[], Awaitable[int]], want: int) -> bool:
    """Poll ``count`` until it is ``want`` (the batch writer caught up) or 30 s passed."""
    end = asyncio.get_running_loop().time() + 30
    while True:
        if await count() >= want:
            return True
        if asyncio.get_running_loop().time() > end:
            return False
        await asyncio.sleep(0.1)  # polling the database


async def flush_neighbour_cache(pair: Pair) -> None:
    """Forget what the host's kernel learnt on the link: each scan starts from nothing."""
    proc = await asyncio.create_subprocess_exec("ip", "neigh", "flush", "dev", pair.host)
    await proc.wait()


async def run_sender(
    ns: str, pair: Pair, rate: int, count: int, first: int, cycle: int, base: int
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, sys.executable, str(SENDER), pair.peer,
        str(rate), str(count), str(first), str(cycle), str(base),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the sender failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


async def ingest(
    rt: ServiceRuntime, ns: str, pair: Pair, args: argparse.Namespace
) -> list[IngestRow]:
    def recorded() -> float:
        labels = {"interface": pair.host, "kind": "arp_gratuitous"}
        return rt.metrics.registry.get_sample_value(FRAMES, labels) or 0.0

    async def neighbours() -> int:
        async with rt.db.engine.connect() as conn:
            return int(
                (await conn.execute(text("select count(*) from discovery_neighbour"))).scalar_one()
            )

    rows = []
    # Known: the neighbours are seen once first (not measured), then round and round.
    before = recorded()
    await run_sender(ns, pair, 5000, args.neighbours, 0, args.neighbours, KNOWN_BASE)
    await settle(recorded, before + args.neighbours)
    if not await written(neighbours, args.neighbours):
        raise SystemExit("the known neighbours were not all written")
    loop = asyncio.get_running_loop()
    first_new = 0
    plan = [("known", r) for r in args.rates] + [("new", r) for r in args.new_rates]
    for traffic, rate in plan:
        count = (rate or args.flat_out_rate) * args.seconds
        before, reached = recorded(), rx_packets(pair.host)
        cpu_start = time.process_time()
        if traffic == "known":
            result = await run_sender(ns, pair, rate, count, 0, args.neighbours, KNOWN_BASE)
        else:
            result = await run_sender(ns, pair, rate, count, first_new, count, NEW_BASE)
            first_new += count
        done = loop.time()
        got = int(await settle(recorded, before + count) - before)
        cpu = time.process_time() - cpu_start
        rows.append(
            IngestRow(
                traffic,
                rate,
                result["sent"],
                result["sent"] / result["seconds"],
                rx_packets(pair.host) - reached,
                got,
                result["sent"] - got,
                loop.time() - done,
                cpu / (result["seconds"] + loop.time() - done),  # sending and settling
                cpu / max(got, 1) * 1e6,
            )
        )
        print_ingest(rows[-1:], header=len(rows) == 1)
    return rows


def print_ingest(rows: list[IngestRow], header: bool) -> None:
    if header:
        print(
            f"{'traffic':<7} {'rate':>7} {'sent':>8} {'sent/s':>8} {'reached':>8} "
            f"{'recorded':>8} {'lost':>7} {'settle s':>8} {'cores':>5} {'us/frame':>8}"
        )
    for r in rows:
        rate = str(r.rate) if r.rate else "max"
        print(
            f"{r.traffic:<7} {rate:>7} {r.sent:>8} {r.send_rate:>8.0f} {r.reached:>8} "
            f"{r.recorded:>8} {r.lost:>7} {r.seconds_to_settle:>8.2f} {r.service_cores:>5.2f} "
            f"{r.cpu_us_per_frame:>8.1f}",
            flush=True,
        )


# -- scan -----------------------------------------------------------------------------------


@dataclass
class ScanRow:
    tool: str
    settings: str
    seconds: list[float]  # the tool's own time per repeat (metalbus: the scan's start to end)
    wall: list[float]  # from the request until the client saw it done
    found: list[int]

    def add(self, seconds: float, wall: float, found: int) -> None:
        self.seconds.append(seconds)
        self.wall.append(wall)
        self.found.append(found)


async def metalbus_scan(rt: ServiceRuntime, pair: Pair) -> tuple[float, float, int]:
    await flush_neighbour_cache(pair)
    started = time.perf_counter()
    scan = await rt.bus.request(
        d.SCAN_START, d.ScanRequest(cidr=str(SCAN_NET), interface=pair.host)
    )
    while scan.state is d.ScanState.RUNNING:
        await asyncio.sleep(0.02)  # polling scan_get, as a client does
        scan = await rt.bus.request(d.SCAN_GET, d.ScanById(id=scan.id))
    wall = time.perf_counter() - started
    if scan.state is not d.ScanState.DONE or scan.finished_at is None:
        raise SystemExit(f"the scan failed: {scan.error}")
    return (scan.finished_at - scan.started_at).total_seconds(), wall, scan.answered


async def nmap_scan(pair: Pair) -> tuple[float, float, int]:
    await flush_neighbour_cache(pair)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "nmap", "-sn", "-n", "-e", pair.host, "-oG", "-", str(SCAN_NET),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"nmap failed: {err.decode(errors='replace')}")
    output = out.decode()
    up = set(re.findall(r"^Host: (\S+) .*Status: Up", output, re.M)) - {SCAN_HOST}  # not ours
    took = re.search(r"scanned in ([\d.]+) seconds", output)
    return (float(took.group(1)) if took else wall), wall, len(up)


async def scans(rt: ServiceRuntime, pair: Pair, args: argparse.Namespace) -> list[ScanRow]:
    rows = [
        ScanRow("metalbus", f"{int(r)}/s, wait {w:g} s", [], [], []) for r, w in args.scan_settings
    ]
    have_nmap = shutil.which("nmap") is not None
    if have_nmap:
        rows.append(ScanRow("nmap -sn", "its defaults", [], [], []))
    else:
        print("nmap is not installed (scripts/install-system-packages.sh): no comparison")
    settings = rt.settings
    assert isinstance(settings, DiscoverySettings)
    for _ in range(args.repeats):  # interleaved: whatever else runs lands on each alike
        for row, (rate, wait) in zip(rows, args.scan_settings, strict=False):
            # The scanner reads its settings at each scan.
            settings.scan_rate_pps, settings.scan_reply_wait_s = rate, wait
            row.add(*await metalbus_scan(rt, pair))
        if have_nmap:
            rows[-1].add(*await nmap_scan(pair))
    return rows


def print_scans(rows: list[ScanRow], answering: int) -> None:
    print(f"\nscan of {SCAN_NET} ({answering} addresses answer), medians:")
    print(f"{'tool':<9} {'settings':<18} {'seconds':>8} {'wall s':>7} {'found':>6}")
    for r in rows:
        print(
            f"{r.tool:<9} {r.settings:<18} {statistics.median(r.seconds):>8.2f} "
            f"{statistics.median(r.wall):>7.2f} {min(r.found):>6}"
        )
    nmap = [r for r in rows if r.tool != "metalbus"]
    if nmap:
        base = statistics.median(nmap[0].wall)
        for r in rows[: len(rows) - 1]:
            ratio = statistics.median(r.wall) / base
            print(f"metalbus ({r.settings}) / nmap -sn, wall: {ratio:.2f}x")


# -- main -----------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("needs root (network namespaces, raw sockets)")
        return 1
    with tempfile.TemporaryDirectory(prefix="metalbus-bench-discovery-") as tmp:
        folder = Path(tmp)
        with nats_server(folder) as nats_url, namespace(args) as (ns, ingest_pair, scan_pair):
            rt = ServiceRuntime(
                DEFINITION,
                DiscoverySettings(
                    nats_url=nats_url,
                    database_url=f"sqlite:///{folder}/discovery.db",
                    interfaces=[ingest_pair.host, scan_pair.host],
                ),
            )
            await rt.start()
            try:
                ingest_rows = await ingest(rt, ns, ingest_pair, args)
                scan_rows = await scans(rt, scan_pair, args)
            finally:
                await rt.stop()
    clean = [r for r in ingest_rows if r.lost == 0]
    for traffic in ("known", "new"):
        best = max((r.send_rate for r in clean if r.traffic == traffic), default=None)
        print(
            f"ingest, {traffic} neighbours: highest rate with no loss "
            + (f"{best:.0f} frames/s" if best else "none")
        )
    print_scans(scan_rows, args.answering)
    if not args.no_save:
        out = BENCH_DIR / "results" / f"discovery-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "settings": vars(args),
                    "ingest": [asdict(r) for r in ingest_rows],
                    "scan": [asdict(r) for r in scan_rows],
                    "cores": os.cpu_count(),
                    "load_average": os.getloadavg(),
                },
                indent=2,
            )
        )
        print(f"saved {out.relative_to(REPO)}")
    return 0


def scan_setting(text: str) -> tuple[float, float]:
    rate, _, wait = text.partition(":")
    return float(rate), float(wait or 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates", type=int, nargs="+", default=[20000, 35000, 50000, 65000, 80000, 120000, 0],
        help="frames/s of known neighbours (0: as fast as the sender goes)",
    )  # fmt: skip
    parser.add_argument(
        "--new-rates", type=int, nargs="+", default=[5000, 10000, 20000, 40000],
        help="frames/s of new neighbours",
    )  # fmt: skip
    parser.add_argument("--seconds", type=int, default=3, help="seconds of frames per rate")
    parser.add_argument(
        "--flat-out-rate", type=int, default=200000,
        help="for rate 0: frames sent = this x --seconds",
    )  # fmt: skip
    parser.add_argument("--neighbours", type=int, default=4096, help="known neighbours")
    parser.add_argument(
        "--answering", type=int, default=50, help="addresses of the /24 that answer"
    )
    parser.add_argument(
        "--scan-settings", type=scan_setting, nargs="+",
        default=[(200.0, 1.0), (1000.0, 0.2), (5000.0, 0.2)],
        help="metalbus scans as RATE:REPLY_WAIT_S (the service's default is 200:1)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="scans per tool and setting")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    sys.exit(uvloop.run(main_async(args)))


if __name__ == "__main__":
    main()
