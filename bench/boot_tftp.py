"""TFTP benchmark: metalbus's TFTP server beside tftpd-hpa, in the same run, on loopback.

Both servers serve the same temporary root: metalbus's ``TftpServer`` in a process of its
own (``--serve``, the same code the boot service runs, on uvloop as the service), tftpd-hpa as
``in.tftpd -L -s <root> -a 127.0.0.1:<port>``. The clients are real programs:

- **large**: one 64 MiB file (``--size-mib``) fetched with atftp at each blksize
  (512/1468/8192) x windowsize (1/16/64). tftpd-hpa does not negotiate windowsize, so it
  always runs in lockstep; each metalbus row is compared with tftpd-hpa at the same blksize.
  Median of ``--repeats`` runs; every copy's SHA-256 is checked.
- **small**: ``--small-files`` files of 16 KiB, fetched by 8 curl processes at once (each
  fetching its share in one invocation), blksize 1468: files/s.
- **concurrent**: ``--clients`` atftp clients at once, each fetching a ``--concurrent-mib``
  MiB file (blksize 1468; windowsize 16 against metalbus, lockstep against tftpd-hpa):
  aggregate MB/s and p99 completion time.

The issue's targets: with windowsize 16 or more at least 3x tftpd-hpa; lockstep at least
0.8x. A run that fails (a client error or a timeout) is reported as such, not hidden. It is
a report, not a test: it exits 0 whatever the figures, 1 when the set-up fails or a copy
is wrong.

Run: ``make bench-tftp`` or ``.venv/bin/python bench/boot_tftp.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reports import save_report  # bench/ is the script's directory: on sys.path

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"


class SetupError(Exception):
    """A server or client program is missing or did not start."""


class WrongCopy(Exception):
    """A client's copy differs from the file served."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def serve(root: Path, port: int) -> None:
    """``--serve``: run metalbus's TFTP server on ``port`` until killed."""
    from metalbus.boot.configs.provider import BootConfigs
    from metalbus.boot.configs.render import BootConfig
    from metalbus.boot.tftp.files import BootFiles
    from metalbus.boot.tftp.server import TftpMetrics, TftpServer
    from metalbus.shared.metrics import ServiceMetrics
    from metalbus.shared.runtime import install_fast_event_loop

    async def run() -> None:
        configs = BootConfigs(BootConfig("enlist"))
        metrics = TftpMetrics(ServiceMetrics("boot"))
        server = TftpServer(HOST, port, BootFiles(root, configs.render_tftp), metrics)
        await server.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    install_fast_event_loop()  # uvloop, as the boot service runs
    asyncio.run(run())


@contextlib.contextmanager
def process(argv: list[str], ready_line: bytes | None, port: int) -> Iterator[None]:
    """A server process, ready when it prints ``ready_line`` (or when its port is bound)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        if ready_line is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if ready_line not in line:
                raise SetupError(f"{argv[0]} did not start: {line!r}")
        else:
            deadline = time.monotonic() + 10
            while not _bound(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SetupError(f"{argv[0]} did not bind {port}")
                time.sleep(0.02)  # polling a port with a deadline
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
        return False


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def atftp(port: int, name: str, out: Path, blksize: int, window: int) -> list[str]:
    argv = ["atftp", "--option", f"blksize {blksize}"]
    if window > 1:
        argv += ["--option", f"windowsize {window}"]
    return [*argv, "-g", "-r", name, "-l", str(out), HOST, str(port)]


def timed(argv: list[str], timeout: float) -> tuple[float | None, str]:
    """Seconds the command took, or None and why it failed."""
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()[-1:]
        return None, f"exit {done.returncode}: {' '.join(tail)}"
    return elapsed, ""


def large(args: argparse.Namespace, ports: dict[str, int], work: Path) -> list[dict[str, Any]]:
    expected = sha256(work / "root" / "large.bin")
    size = args.size_mib * 1024 * 1024
    rows: list[dict[str, Any]] = []
    for blksize in args.blksizes:
        for window in args.windows:
            for server, port in ports.items():
                if server == "tftpd-hpa" and window != args.windows[0]:
                    continue  # lockstep whatever is asked: measured once per blksize
                times, errors = [], []
                for _ in range(args.repeats):
                    out = work / "out.bin"
                    out.unlink(missing_ok=True)
                    argv = atftp(port, "large.bin", out, blksize, window)
                    seconds, error = timed(argv, args.timeout)
                    if seconds is None:
                        errors.append(error)
                        continue
                    if sha256(out) != expected:
                        raise WrongCopy(f"{server} blksize {blksize} window {window}")
                    times.append(seconds)
                median = statistics.median(times) if times else None
                rows.append(
                    {
                        "server": server,
                        "blksize": blksize,
                        "windowsize": window if server == "metalbus" else 1,
                        "seconds": median,
                        "mb_s": size / median / 1e6 if median else None,
                        "runs": len(times),
                        "errors": errors,
                    }
                )
                print(_large_line(rows[-1]), flush=True)
    for row in rows:
        base = next(
            (r for r in rows if r["server"] == "tftpd-hpa" and r["blksize"] == row["blksize"]),
            None,
        )
        if row["server"] == "metalbus" and base and base["seconds"] and row["seconds"]:
            row["x_tftpd_hpa"] = base["seconds"] / row["seconds"]
    return rows


def _large_line(row: dict[str, Any]) -> str:
    what = f"{row['server']:9} blksize {row['blksize']:5} window {row['windowsize']:3}"
    if row["seconds"] is None:
        return f"  {what}: failed ({'; '.join(row['errors'][:1])})"
    failed = f", {len(row['errors'])} failed" if row["errors"] else ""
    return f"  {what}: {row['seconds']:6.2f} s  {row['mb_s']:7.1f} MB/s{failed}"


def small(args: argparse.Namespace, ports: dict[str, int], work: Path) -> list[dict[str, Any]]:
    names = [f"small/{i:05}.bin" for i in range(args.small_files)]
    rows = []
    for server, port in ports.items():
        out_dir = work / f"small-{server}"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir()
        commands = []
        for worker in range(8):
            argv = ["curl", "-sS", "--tftp-blksize", "1468"]
            for name in names[worker::8]:
                argv += [f"tftp://{HOST}:{port}/{name}", "-o", str(out_dir / Path(name).name)]
            commands.append(argv)
        started = time.perf_counter()
        procs = [subprocess.Popen(argv) for argv in commands]
        codes = [p.wait(args.timeout) for p in procs]
        seconds = time.perf_counter() - started
        if any(codes):
            raise WrongCopy(f"{server}: curl exit codes {codes}")
        for name in names:
            copy = (out_dir / Path(name).name).read_bytes()
            if copy != (work / "root" / name).read_bytes():
                raise WrongCopy(f"{server}: {name}")
        rows.append({"server": server, "files": len(names), "seconds": seconds,
                     "files_s": len(names) / seconds})  # fmt: skip
        print(f"  {server:9} {len(names)} x 16 KiB: {seconds:6.2f} s  "
              f"{len(names) / seconds:7.0f} files/s", flush=True)  # fmt: skip
    return rows


def concurrent(args: argparse.Namespace, ports: dict[str, int], work: Path) -> list[dict[str, Any]]:
    expected = sha256(work / "root" / "concurrent.bin")
    rows = []
    for server, port in ports.items():
        window = 16 if server == "metalbus" else 1
        outs = [work / f"c-{server}-{i}" for i in range(args.clients)]
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                atftp(port, "concurrent.bin", out, 1468, window),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for out in outs
        ]
        finished: list[float] = []
        for proc in procs:
            try:
                proc.wait(max(1.0, args.timeout * 4 - (time.perf_counter() - started)))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Completion times: each copy's modification time, from the start.
        wall = time.perf_counter() - started
        epoch_start = time.time() - wall
        for out in outs:
            if out.exists() and sha256(out) == expected:
                finished.append(out.stat().st_mtime - epoch_start)
        finished.sort()
        p99 = finished[min(len(finished) - 1, int(len(finished) * 0.99))] if finished else None
        good = len(finished)
        row = {
            "server": server,
            "windowsize": window,
            "clients": args.clients,
            "completed": good,
            "failed": args.clients - good,
            "seconds": wall,
            "aggregate_mb_s": good * args.concurrent_mib * 1024 * 1024 / wall / 1e6,
            "p99_s": p99,
        }
        rows.append(row)
        p99_text = f"{p99:.2f} s" if p99 is not None else "-"
        rate = row["aggregate_mb_s"]
        print(f"  {server:9} window {window:2}: {good}/{args.clients} complete in {wall:6.2f} s, "
              f"{rate:7.1f} MB/s aggregate, p99 {p99_text}", flush=True)  # fmt: skip
        for out in outs:
            out.unlink(missing_ok=True)
    return rows


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    for program in ("atftp", "curl", "in.tftpd"):
        if shutil.which(program) is None:
            raise SetupError(f"{program} missing: scripts/install-system-packages.sh")
    root = work / "root"
    (root / "small").mkdir(parents=True)
    with (root / "large.bin").open("wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1024 * 1024))
    with (root / "concurrent.bin").open("wb") as f:
        for _ in range(args.concurrent_mib):
            f.write(os.urandom(1024 * 1024))
    for i in range(args.small_files):
        (root / "small" / f"{i:05}.bin").write_bytes(os.urandom(16 * 1024))
    ports = {"metalbus": free_port(), "tftpd-hpa": free_port()}
    metalbus = [sys.executable, __file__, "--serve", str(root), str(ports["metalbus"])]
    hpa = [shutil.which("in.tftpd") or "in.tftpd", "-L", "-s", str(root),
           "-a", f"{HOST}:{ports['tftpd-hpa']}"]  # fmt: skip
    report: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "args": vars(args)}
    with process(metalbus, b"ready", ports["metalbus"]), process(hpa, None, ports["tftpd-hpa"]):
        print(f"large file ({args.size_mib} MiB, atftp, median of {args.repeats}):")
        report["large"] = large(args, ports, work)
        if args.small_files:
            print("small files (curl x 8, blksize 1468):")
            report["small"] = small(args, ports, work)
        if args.clients:
            print(f"concurrent ({args.clients} atftp clients x {args.concurrent_mib} MiB, "
                  "blksize 1468):")  # fmt: skip
            report["concurrent"] = concurrent(args, ports, work)
    return report


def print_ratios(report: dict[str, Any]) -> None:
    print("\nmetalbus / tftpd-hpa (same blksize; tftpd-hpa in lockstep):")
    for row in report["large"]:
        if row["server"] == "metalbus":
            ratio = row.get("x_tftpd_hpa")
            target = 3.0 if row["windowsize"] >= 16 else 0.8 if row["windowsize"] == 1 else None
            verdict = ""
            if ratio is not None and target is not None:
                verdict = f"  (target >= {target}x: {'met' if ratio >= target else 'NOT met'})"
            text = f"{ratio:5.2f}x" if ratio is not None else "  n/a"
            print(f"  blksize {row['blksize']:5} window {row['windowsize']:3}: {text}{verdict}")
    if "small" in report:
        by = {r["server"]: r for r in report["small"]}
        print(f"  small files: {by['tftpd-hpa']['seconds'] / by['metalbus']['seconds']:.2f}x")
    if "concurrent" in report:
        by = {r["server"]: r for r in report["concurrent"]}
        ratio = by["metalbus"]["aggregate_mb_s"] / max(by["tftpd-hpa"]["aggregate_mb_s"], 1e-9)
        print(f"  concurrent aggregate MB/s: {ratio:.2f}x")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=64, help="large file size (64)")
    parser.add_argument("--blksizes", type=int, nargs="+", default=[512, 1468, 8192])
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=3, help="runs per large row (3)")
    parser.add_argument("--small-files", type=int, default=400, help="16 KiB files (400)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    parser.add_argument("--concurrent-mib", type=int, default=30, help="their file (30 MiB)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per client run (30 s)")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON report")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Make the files, start both servers, measure, report, stop."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(Path(argv[1]), int(argv[2]))
        return 0
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="metalbus-bench-tftp-"))
    try:
        started = time.perf_counter()
        report = run(args, work)
        report["wall_s"] = time.perf_counter() - started
        print_ratios(report)
        print(f"\nwhole run: {report['wall_s']:.0f} s")
        if not args.no_save:
            print(f"saved {save_report(report, args.results_dir, 'boot_tftp')}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (SetupError, WrongCopy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
