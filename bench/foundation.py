"""Foundation benchmark: what metalbus' HTTP -> NATS -> service path costs on this machine.

Three targets, measured in one run against real processes on loopback:

- ``full``: ``GET /api/v1/services/ipam/ping`` on the api service (bearer token) -> NATS
  request -> the ipam service's ``ping`` endpoint -> reply -> HTTP response.
- ``bare``: ``GET /ping`` on a one-route FastAPI app under one uvicorn worker.
- ``raw``: a nats-py request answered by a plain nats-py subscriber (no metalbus code).

The two HTTP targets are measured with two clients: httpx (the load client everyone uses,
but it spends about as much CPU per request as a bare FastAPI endpoint, so it flattens the
ratios) and a minimal keep-alive HTTP/1.1 client (what is left is the servers' cost).

For each: p50/p99 of sequential requests from one client after a warm-up, then requests/s
with ``--concurrency`` client tasks sharing ``--concurrent-requests`` requests, interleaved
in ``--rounds`` rounds. Then the ratios full/bare and full/raw, the target (full p50 <= 3x
bare p50), and the memory of every metalbus service process at idle. It is a report, not a
test: it exits 0 whether the target is met or not (1 only when the system under test cannot
be started).

Run: ``make bench`` or ``.venv/bin/python bench/foundation.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import platform
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx
import nats
from bare_servers import NATS_SUBJECT
from reports import positive, save_report  # bench/ is the script's directory: on sys.path

from metalbus.cli.up import free_port, port_open, wait_until

BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
SERVICES = ("api", "ipam", "compose", "boot", "power", "discovery")
TARGET_RATIO = 3.0  # full path p50 may cost at most this many bare-FastAPI p50s
UP_DEADLINE_S = 120.0  # metalbus up waits up to 90 s for its services; leave it room to say why
HELPER_DEADLINE_S = 30.0
STOP_GRACE_S = 30.0  # metalbus up gives each service 15 s to stop, in parallel
POLL_S = 0.05
PR_SET_PDEATHSIG = 1

# Loaded once in the parent: the pre-exec hook runs between fork and exec, where loading a
# library could deadlock on a lock another thread held at fork time.
_LIBC: ctypes.CDLL | None = None
if sys.platform == "linux":
    with contextlib.suppress(OSError):
        _LIBC = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """The system under test could not be started or does not answer correctly."""


class BadAnswer(Exception):
    """A timed request got something other than 200 (counted as an error, not timed)."""


# -- processes ----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Pre-exec hook: have the kernel SIGTERM the child if the benchmark dies, even by SIGKILL.

    Ctrl-C and exceptions are handled by the ``finally`` in :func:`main`; this covers the
    case where no Python code gets to run at all, so no nats-server is left behind. (The
    signal follows the *thread* that forked, so every process is started from the main one.)
    """
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Proc:
    """A process the benchmark started, with its stdout lines (when captured) and its log."""

    name: str
    popen: subprocess.Popen[str]
    log_path: Path
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        """The last lines it printed and logged, for error messages."""
        logged: list[str] = []
        with contextlib.suppress(OSError):
            logged = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join([*self.seen, *logged][-lines:])

    def wait_for_line(self, pattern: str, deadline_s: float) -> re.Match[str]:
        """Block until a stdout line matches ``pattern``.

        Raises:
            SetupError: the process exited or the deadline passed first.
        """
        regex = re.compile(pattern)
        stop_at = time.monotonic() + deadline_s
        while True:
            remaining = stop_at - time.monotonic()
            if remaining <= 0:
                raise SetupError(
                    f"{self.name} was not ready within {deadline_s:g}s:\n{self.tail()}"
                )
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.popen.wait()
                raise SetupError(
                    f"{self.name} exited (code {self.popen.returncode}):\n{self.tail()}"
                )
            if match := regex.search(line):
                return match

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """Signal the process, wait up to ``grace`` seconds, then kill it."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop within {grace:g}s; killing it", file=sys.stderr)
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def _pump(stream: TextIO, lines: queue.Queue[str | None], seen: list[str]) -> None:
    """Copy a child's stdout into a queue, line by line; ``None`` marks its end."""
    with contextlib.suppress(ValueError, OSError):  # closed under us during shutdown
        for raw in stream:
            line = raw.rstrip("\n")
            seen.append(line)
            lines.put(line)
    lines.put(None)


def start_process(
    name: str,
    argv: list[str],
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    capture: bool = True,
) -> Proc:
    """Start ``argv`` in its own session (Ctrl-C reaches only the benchmark, which stops the
    children in order), stderr (and stdout unless captured) to ``<log_dir>/<name>.log``."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("w") as log:
        popen = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE if capture else log,
            stderr=log,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    proc = Proc(name=name, popen=popen, log_path=log_path)
    if popen.stdout is not None:
        threading.Thread(
            target=_pump,
            args=(popen.stdout, proc.lines, proc.seen),
            name=f"{name} stdout",
            daemon=True,
        ).start()
    return proc


def _is_metalbus_service(pid: int) -> bool:
    """Whether ``pid`` is still a live metalbus service (guards against a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and b"metalbus." in cmdline


def stop_strays(pids: dict[str, int]) -> None:
    """Stop services the launcher left behind (only if it had to be killed itself)."""
    strays = {name: pid for name, pid in pids.items() if _is_metalbus_service(pid)}
    for name, pid in strays.items():
        print(f"  {name} (pid {pid}) outlived the launcher; stopping it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if strays and not wait_until(
        lambda: not any(_is_metalbus_service(p) for p in strays.values()), 15, POLL_S
    ):
        for pid in strays.values():
            if _is_metalbus_service(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


# -- the system under test -------------------------------------------------------------


@dataclass
class System:
    """Where everything listens, once it is up."""

    work_dir: Path
    nats_url: str
    nats_version: str
    api_url: str
    token: str
    bare_url: str
    service_pids: dict[str, int]
    reference_pids: dict[str, int]


def start_system(stack: contextlib.ExitStack, work_dir: Path) -> System:
    """Start nats-server, ``metalbus up`` (all six services) and both baselines.

    Every stop is pushed on ``stack`` right after its start, so whatever started is
    stopped (in reverse order) however the run ends.

    Raises:
        SetupError: a process did not start or become ready in time.
    """
    logs = work_dir / "bench-logs"
    logs.mkdir(parents=True)
    nats_bin = VENV_BIN / "nats-server"
    metalbus_bin = VENV_BIN / "metalbus"
    for binary in (nats_bin, metalbus_bin):
        if not binary.exists():
            raise SetupError(f"{binary} is missing: run `make install` and use .venv/bin/python")
    nats_version = subprocess.run(
        [str(nats_bin), "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()

    print("starting nats-server ...", file=sys.stderr)
    port = free_port()
    store = work_dir / "jetstream"
    nats_proc = start_process(
        "nats-server",
        [str(nats_bin), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        logs,
        capture=False,
    )
    stack.callback(nats_proc.stop, signal.SIGTERM, 10.0)
    if not wait_until(
        lambda: port_open("127.0.0.1", port) or not nats_proc.alive(), HELPER_DEADLINE_S, POLL_S
    ):
        raise SetupError(f"nats-server did not listen within {HELPER_DEADLINE_S:g}s")
    if not nats_proc.alive():
        raise SetupError(f"nats-server exited:\n{nats_proc.tail()}")
    nats_url = f"nats://127.0.0.1:{port}"

    print("starting metalbus up (api ipam compose boot power discovery) ...", file=sys.stderr)
    var_dir = work_dir / "var"
    # The launcher prints its banner with plain print(): unbuffered, or it would sit in a
    # pipe buffer until the launcher exits.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    up = start_process(
        "metalbus-up",
        [
            str(metalbus_bin),
            "up",
            "--var-dir",
            str(var_dir),
            "--api-port",
            "0",
            "--nats-url",
            nats_url,
        ],
        logs,
        env=env,
    )
    service_pids: dict[str, int] = {}

    def stop_metalbus() -> None:
        # SIGINT is the launcher's Ctrl-C: it stops the services in parallel, then itself.
        up.stop(signal.SIGINT, STOP_GRACE_S)
        stop_strays(service_pids)

    stack.callback(stop_metalbus)
    up.wait_for_line(r"^Press Ctrl-C to stop", UP_DEADLINE_S)
    token_line = next((line for line in up.seen if "admin token" in line), "")
    token_match = re.search(r"admin token\s+(mb_\S+)", token_line)
    if token_match is None:
        raise SetupError(f"metalbus up printed no admin token:\n{up.tail()}")
    state = json.loads((var_dir / "state.json").read_text())
    service_pids.update({name: int(info["pid"]) for name, info in state["services"].items()})
    if missing := [name for name in SERVICES if name not in service_pids]:
        raise SetupError(f"metalbus up did not start {', '.join(missing)}:\n{up.tail()}")

    print("starting the bare FastAPI app and the raw NATS responder ...", file=sys.stderr)
    helper = str(BENCH_DIR / "bare_servers.py")
    bare = start_process("bare-fastapi", [sys.executable, helper, "http", "--port", "0"], logs)
    stack.callback(bare.stop)
    raw = start_process("raw-responder", [sys.executable, helper, "nats", "--url", nats_url], logs)
    stack.callback(raw.stop)
    bare_port = bare.wait_for_line(r"^ready port=(\d+)", HELPER_DEADLINE_S).group(1)
    raw.wait_for_line(r"^ready", HELPER_DEADLINE_S)

    return System(
        work_dir=work_dir,
        nats_url=nats_url,
        nats_version=nats_version,
        api_url=str(state["api_url"]),
        token=token_match.group(1),
        bare_url=f"http://127.0.0.1:{bare_port}",
        service_pids=service_pids,
        reference_pids={"bare-fastapi": bare.pid, "raw-responder": raw.pid},
    )


def read_memory(pid: int) -> dict[str, int] | None:
    """``VmHWM`` (peak resident set) and ``VmRSS`` (current) of a process, in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = dict(re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", text, re.MULTILINE))
    return {key: int(value) for key, value in found.items()}


# -- measuring ---------------------------------------------------------------------------

Call = Callable[[], Awaitable[None]]
Get = Callable[[str], Awaitable[tuple[int, bytes]]]
CLIENTS = ("httpx", "minimal")
BUSY_CLIENT_CORES = 0.85  # above this the single-threaded client, not the server, sets req/s


@dataclass
class Measurement:
    """The latencies (seconds), throughput and client CPU time of one target."""

    key: str
    label: str
    sequential: list[float] = field(default_factory=list)
    under_load: list[float] = field(default_factory=list)
    load_wall_s: float = 0.0
    client_cpu_sequential_s: float = 0.0
    client_cpu_load_s: float = 0.0
    round_p50s: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    @property
    def throughput(self) -> float:
        """Successful requests per second with the configured concurrency."""
        return len(self.under_load) / self.load_wall_s if self.load_wall_s else 0.0

    def summary(self) -> dict[str, Any]:
        """Milliseconds and requests/s, for the table and the JSON file."""
        seq_n = len(self.sequential)
        return {
            "label": self.label,
            "p50_ms": percentile(self.sequential, 50) * 1e3,
            "p99_ms": percentile(self.sequential, 99) * 1e3,
            "mean_ms": sum(self.sequential) / seq_n * 1e3 if seq_n else 0.0,
            "client_cpu_ms_per_request": self.client_cpu_sequential_s / seq_n * 1e3
            if seq_n
            else 0.0,
            "requests_per_s": self.throughput,
            "load_p50_ms": percentile(self.under_load, 50) * 1e3,
            "load_p99_ms": percentile(self.under_load, 99) * 1e3,
            "client_cores_under_load": self.client_cpu_load_s / self.load_wall_s
            if self.load_wall_s
            else 0.0,
            "round_p50_ms": [p50 * 1e3 for p50 in self.round_p50s],
            "sequential_n": seq_n,
            "load_n": len(self.under_load),
            "errors": self.errors,
            "first_error": self.first_error,
        }


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (an observed value, no interpolation); 0 when empty."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


async def _timed(call: Call, into: list[float], m: Measurement) -> None:
    started = time.perf_counter()
    try:
        await call()
    except Exception as exc:  # count and carry on: one stray failure should not void a run
        m.errors += 1
        m.first_error = m.first_error or f"{type(exc).__name__}: {exc}"[:300]
        return
    into.append(time.perf_counter() - started)


async def _concurrently(
    call: Call, total: int, workers: int, into: list[float], m: Measurement
) -> float:
    """Run ``total`` calls from ``workers`` tasks pulling from one counter; returns wall time."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1  # no await between test and decrement: safe on one event loop
            await _timed(call, into, m)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - started


@dataclass
class Target:
    """One thing to measure: how to make a request, and what was measured so far."""

    call: Call
    result: Measurement


def _split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal counts (the first ones one larger)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def _rewarm(target: Target, args: argparse.Namespace, discard: list[float]) -> None:
    """Untimed requests over every pooled connection before a timed chunk.

    While the other targets run, a server may close this target's idle keep-alive
    connections (uvicorn does after 5 s); reopening them here keeps connection set-up out
    of the timings.
    """
    await _concurrently(target.call, args.concurrency * 2, args.concurrency, discard, target.result)


async def measure(targets: list[Target], args: argparse.Namespace) -> None:
    """Warm every target up, then time them in interleaved rounds.

    Each round gives every target its share of the sequential requests, then (in a second
    pass) of the concurrent ones, rotating the order. Anything else the machine does during
    the run (a test suite, a backup) then lands on all targets alike instead of skewing
    whichever one happened to run at the time, so the ratios stay honest. The benchmark's
    own CPU time is recorded too: a client that needs a whole core measures itself.
    """
    discard: list[float] = []
    for target in targets:
        print(f"warming up {target.result.label} ...", file=sys.stderr)
        for _ in range(args.warmup):
            await _timed(target.call, discard, target.result)
        await _rewarm(target, args, discard)
    sequential = _split(args.requests, args.rounds)
    concurrent = _split(args.concurrent_requests, args.rounds)
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}: sequential ...", file=sys.stderr)
        for target in targets[index % len(targets) :] + targets[: index % len(targets)]:
            m = target.result
            await _rewarm(target, args, discard)
            chunk: list[float] = []
            cpu = time.process_time()
            for _ in range(sequential[index]):
                await _timed(target.call, chunk, m)
            m.client_cpu_sequential_s += time.process_time() - cpu
            m.sequential.extend(chunk)
            m.round_p50s.append(percentile(chunk, 50))
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}: concurrent ...", file=sys.stderr)
        for target in targets[index % len(targets) :] + targets[: index % len(targets)]:
            m = target.result
            await _rewarm(target, args, discard)
            cpu = time.process_time()
            m.load_wall_s += await _concurrently(
                target.call, concurrent[index], args.concurrency, m.under_load, m
            )
            m.client_cpu_load_s += time.process_time() - cpu


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class MinimalHttpClient:
    """GET over a shared pool of keep-alive HTTP/1.1 connections, doing as little as it can.

    httpx spends close to a millisecond of CPU per request, more than a bare FastAPI
    endpoint takes to answer, so its numbers are mostly the client's. This client writes a
    prepared request and reads the status, ``Content-Length`` and body, nothing more: what is
    left is the server's cost. It understands only answers with a ``Content-Length`` (all
    that the servers here send).

    Args:
        base_url: ``http://host:port``.
        headers: sent with every request.
        size: connections in the pool (one per concurrent caller is enough).
        timeout: seconds one request may take, waiting for a connection included.
    """

    def __init__(
        self, base_url: str, headers: dict[str, str], size: int, timeout: float = 10.0
    ) -> None:
        url = httpx.URL(base_url)
        self.host = url.host
        self.port = url.port or 80
        self.size = size
        self.timeout = timeout
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._after_path = f" HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{fields}\r\n".encode()
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        """Open every connection of the pool."""
        for _ in range(self.size):
            self._idle.put_nowait(await self._connect())

    async def _connect(self) -> Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._writers.add(writer)
        return reader, writer

    async def get(self, path: str) -> tuple[int, bytes]:
        """``GET path``; returns (status, body).

        Raises:
            BadAnswer: the answer had no ``Content-Length``.
            TimeoutError: no answer (or no free connection) within the timeout.
        """
        async with asyncio.timeout(self.timeout):
            reader, writer = await self._idle.get()
            if reader.at_eof():  # closed by the server while idle (keep-alive timeout)
                writer.close()
                self._writers.discard(writer)
                reader, writer = await self._connect()
            try:
                writer.write(b"GET " + path.encode() + self._after_path)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _CONTENT_LENGTH.search(head)
                if length is None:
                    raise BadAnswer(f"answer without Content-Length: {head[:200]!r}")
                body = await reader.readexactly(int(length.group(1)))
            except Exception:
                # The connection is in an unknown state: replace it, so the pool keeps its size.
                writer.close()
                self._writers.discard(writer)
                self._idle.put_nowait(await self._connect())
                raise
        self._idle.put_nowait((reader, writer))
        return int(head[9:12]), body

    async def aclose(self) -> None:
        """Close every connection."""
        for writer in self._writers:
            writer.close()
        for writer in self._writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._writers.clear()


def fail_missing_sniffio_fast() -> bool:
    """Make a missing ``sniffio`` fail at once; returns whether it was missing.

    httpcore tries ``import sniffio`` several times per request. Without the package each try
    searches every ``sys.path`` entry again (Python caches only successful imports), about
    0.5 ms of client CPU per request here: more than the bare endpoint costs. A ``None`` in
    ``sys.modules`` makes the import fail immediately, exactly as it would anyway, so httpx
    behaves the same and the httpx rows measure less of httpx.
    """
    try:
        import sniffio  # noqa: F401
    except ImportError:
        sys.modules["sniffio"] = None  # type: ignore[assignment]
        return True
    return False


@contextlib.asynccontextmanager
async def http_client(
    kind: str, base_url: str, headers: dict[str, str], concurrency: int
) -> AsyncIterator[Get]:
    """A ``get(path) -> (status, body)`` over one shared keep-alive pool of either client."""
    if kind == "httpx":
        # As large as the concurrency, so no request waits for a connection and none opens
        # a new one once warm.
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, limits=limits, timeout=10.0
        ) as client:

            async def get(path: str) -> tuple[int, bytes]:
                response = await client.get(path)
                return response.status_code, response.content

            yield get
    else:
        minimal = MinimalHttpClient(base_url, headers, concurrency)
        try:
            await minimal.open()
            yield minimal.get
        finally:
            await minimal.aclose()


def _expect_200(get: Get, path: str) -> Call:
    async def call() -> None:
        status, body = await get(path)
        if status != 200:
            raise BadAnswer(f"GET {path} answered {status}: {body[:200]!r}")

    return call


async def _probe(get: Get, path: str, service: str) -> None:
    """One request that must succeed, so a broken set-up fails loudly instead of timing errors."""
    status, body = await get(path)
    answer: Any = None
    with contextlib.suppress(ValueError):
        answer = json.loads(body)
    if status != 200 or not isinstance(answer, dict) or answer.get("service") != service:
        raise SetupError(f"GET {path} answered {status}: {body[:300]!r}")


async def run_benchmarks(system: System, args: argparse.Namespace) -> list[Measurement]:
    """Open a client per target, check each answers, then measure them all together."""
    targets: list[Target] = []
    async with contextlib.AsyncExitStack() as clients:
        nc = await nats.connect(system.nats_url, name="bench client")
        clients.push_async_callback(nc.drain)

        async def raw_call() -> None:
            await nc.request(NATS_SUBJECT, b"{}", timeout=10.0)

        await raw_call()  # the responder said ready; prove it answers before timing
        targets.append(Target(raw_call, Measurement("raw", "raw NATS, nats-py client")))

        auth = {"Authorization": f"Bearer {system.token}"}
        full_path = "/api/v1/services/ipam/ping"
        for kind in CLIENTS:
            bare = await clients.enter_async_context(
                http_client(kind, system.bare_url, {}, args.concurrency)
            )
            await _probe(bare, "/ping", "bare")
            label = f"bare FastAPI, {kind} client"
            targets.append(Target(_expect_200(bare, "/ping"), Measurement(f"bare_{kind}", label)))
            api = await clients.enter_async_context(
                http_client(kind, system.api_url, auth, args.concurrency)
            )
            await _probe(api, full_path, "ipam")
            label = f"full path, {kind} client"
            targets.append(Target(_expect_200(api, full_path), Measurement(f"full_{kind}", label)))
        await measure(targets, args)
    return [target.result for target in targets]


# -- reporting ---------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


def build_report(
    system: System,
    args: argparse.Namespace,
    results: list[Measurement],
    memory_idle: dict[str, dict[str, int] | None],
    memory_after: dict[str, dict[str, int] | None],
) -> dict[str, Any]:
    """Everything the run found, as plain data (printed, and saved as JSON)."""
    by_key = {m.key: m.summary() for m in results}
    raw = by_key["raw"]
    ratios: dict[str, dict[str, float]] = {}
    target: dict[str, Any] = {"rule": f"full path p50 <= {TARGET_RATIO:g}x bare FastAPI p50"}
    for kind in CLIENTS:
        full, bare = by_key[f"full_{kind}"], by_key[f"bare_{kind}"]
        per_round = [
            _ratio(f, b) for f, b in zip(full["round_p50_ms"], bare["round_p50_ms"], strict=True)
        ]
        ratios[kind] = {
            "full_over_bare_p50": _ratio(full["p50_ms"], bare["p50_ms"]),
            "full_over_bare_p50_min_round": min(per_round),
            "full_over_bare_p50_max_round": max(per_round),
            "full_over_raw_p50": _ratio(full["p50_ms"], raw["p50_ms"]),
            "full_over_bare_throughput": _ratio(full["requests_per_s"], bare["requests_per_s"]),
            "full_over_raw_throughput": _ratio(full["requests_per_s"], raw["requests_per_s"]),
        }
        met = ratios[kind]["full_over_bare_p50"] <= TARGET_RATIO
        target[kind] = {
            "ratio": ratios[kind]["full_over_bare_p50"],
            "met": met,
            "met_in_every_round": ratios[kind]["full_over_bare_p50_max_round"] <= TARGET_RATIO,
        }
    return {
        "benchmark": "foundation",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "nats_server": system.nats_version,
        },
        "settings": {
            "warmup": args.warmup,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "concurrent_requests": args.concurrent_requests,
            "rounds": args.rounds,
        },
        "results": by_key,
        "ratios": ratios,
        "target": target,
        "memory_kib": {
            name: {"idle": memory_idle.get(name), "after_bench": memory_after.get(name)}
            for name in memory_idle
        },
    }


def _mib(kib: int | None) -> str:
    return f"{kib / 1024:.1f}" if kib is not None else "-"


def print_report(report: dict[str, Any]) -> None:
    """The human-readable table, ratios, target and memory."""
    s, mach = report["settings"], report["machine"]
    c = s["concurrency"]
    print()
    print(
        f"metalbus foundation benchmark: {mach['cpus_usable']} CPUs, Python {mach['python']}, "
        f"{mach['nats_server']}"
    )
    print(
        f"sequential: {s['requests']} requests after {s['warmup']} warm-up; "
        f"under load: {s['concurrent_requests']} requests from {c} concurrent tasks; "
        f"interleaved in {s['rounds']} rounds"
    )
    print()
    head = (
        f"{'target':<30}{'p50 ms':>8}{'p99 ms':>8}{'client ms/req':>15}{f'req/s @{c}':>11}"
        f"{f'p50@{c} ms':>11}{f'p99@{c} ms':>11}{f'client cores@{c}':>17}{'errors':>8}"
    )
    print(head)
    print("-" * len(head))
    order = [f"{target}_{kind}" for kind in CLIENTS for target in ("full", "bare")] + ["raw"]
    busy = []
    for key in order:
        r = report["results"][key]
        print(
            f"{r['label']:<30}{r['p50_ms']:>8.3f}{r['p99_ms']:>8.3f}"
            f"{r['client_cpu_ms_per_request']:>15.3f}{r['requests_per_s']:>11.0f}"
            f"{r['load_p50_ms']:>11.2f}{r['load_p99_ms']:>11.2f}"
            f"{r['client_cores_under_load']:>17.2f}{r['errors']:>8}"
        )
        if r["client_cores_under_load"] > BUSY_CLIENT_CORES:
            busy.append(r["label"])
    for key in order:
        if error := report["results"][key]["first_error"]:
            print(f"  first error ({key}): {error}")
    if busy:
        print(
            f"  note: the load client used ~1 core for {'; '.join(busy)}: "
            "that req/s is the client's limit more than the server's"
        )
    print()
    print("ratios (p50: >1 means the full path is slower; throughput: <1 means fewer req/s)")
    for kind in CLIENTS:
        r = report["ratios"][kind]
        print(
            f"  {kind + ' client':<16}full / bare FastAPI   p50 {r['full_over_bare_p50']:6.2f}x"
            f"   throughput {r['full_over_bare_throughput']:5.2f}x"
            f"   (p50 ratio per round {r['full_over_bare_p50_min_round']:.2f}"
            f"-{r['full_over_bare_p50_max_round']:.2f}x)"
        )
        print(
            f"  {'':<16}full / raw NATS       p50 {r['full_over_raw_p50']:6.2f}x"
            f"   throughput {r['full_over_raw_throughput']:5.2f}x"
        )
    target = report["target"]
    print()
    print(f"target: {target['rule']}")
    notes = {
        "httpx": "httpx client (client cost in both)",
        "minimal": "minimal client (server cost only)",
    }
    for kind in CLIENTS:
        verdict = "PASS" if target[kind]["met"] else "MISS"
        print(f"  {notes[kind]:<36}{verdict} ({target[kind]['ratio']:.2f}x)")
    print()
    print(f"{'process':<26}{'VmHWM idle MiB':>16}{'VmRSS idle MiB':>16}{'VmHWM after MiB':>17}")
    for name, mem in report["memory_kib"].items():
        idle, after = mem["idle"] or {}, mem["after_bench"] or {}
        print(
            f"{name:<26}{_mib(idle.get('VmHWM')):>16}{_mib(idle.get('VmRSS')):>16}"
            f"{_mib(after.get('VmHWM')):>17}"
        )


# -- entry point -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The tunables; the defaults keep a run under about two minutes on two cores."""

    parser = argparse.ArgumentParser(
        prog="bench/foundation.py",
        description="Latency and throughput of metalbus' HTTP -> NATS -> service path, "
        "against a bare FastAPI app and raw NATS request/reply (a report, not a test).",
    )
    parser.add_argument(
        "--requests",
        type=positive,
        default=2000,
        help="sequential requests timed per target (default 2000)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="untimed sequential requests before timing (default 200)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive,
        default=16,
        help="concurrent client tasks for the throughput phase (default 16)",
    )
    parser.add_argument(
        "--concurrent-requests",
        type=positive,
        default=4000,
        help="requests shared by the concurrent tasks (default 4000)",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=4,
        help="interleaved rounds the requests are split into (default 4)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=BENCH_DIR / "results",
        help="where the JSON report goes (default bench/results)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON report")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder (logs, databases) and print its path",
    )
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same way out as Ctrl-C, through the clean-up in main().
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start everything, measure, report, stop everything; returns the exit code."""
    args = parse_args(argv)
    sniffio_shortcut = fail_missing_sniffio_fast()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    work_dir = Path(tempfile.mkdtemp(prefix="metalbus-bench-"))
    stack = contextlib.ExitStack()
    if args.keep:
        stack.callback(print, f"kept {work_dir} (logs in var/log and bench-logs)", file=sys.stderr)
    else:
        stack.callback(shutil.rmtree, work_dir, ignore_errors=True)
    try:
        system = start_system(stack, work_dir)
        everyone = {**system.service_pids, **system.reference_pids}
        memory_idle = {name: read_memory(pid) for name, pid in everyone.items()}
        results = asyncio.run(run_benchmarks(system, args))
        memory_after = {name: read_memory(pid) for name, pid in everyone.items()}
        report = build_report(system, args, results, memory_idle, memory_after)
        report["settings"]["missing_sniffio_failed_fast"] = sniffio_shortcut
        print_report(report)
        if not args.no_save:
            print(f"\nsaved {save_report(report, args.results_dir, 'foundation')}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        # Clean-up is bounded by timeouts; a second Ctrl-C must not cut it short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping everything ...", file=sys.stderr)
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
