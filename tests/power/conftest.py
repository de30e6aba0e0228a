"""The power service on a real bus and database, and the real BMCs it talks to.

- ``ipmi_sim``: OpenIPMI's BMC simulator (Debian ``openipmi``), its chassis wired to a
  script that keeps the power state and boot device in files, cross-checked with ipmitool;
- ``bmc_farm``: pyghmi's BMC server class, several BMCs in one helper process;
- ``sushy``: sushy-tools' Redfish emulator on libvirt's test driver (in its own process);
- ``webhook``: an HTTP power endpoint served from a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from metalbus.power.service import PowerService, make_definition
from metalbus.power.settings import PowerSettings
from metalbus.shared import subjects
from metalbus.shared.commands import Command
from metalbus.shared.events import RawEvent, decode_raw
from metalbus.shared.runtime import ServiceRuntime
from tests.conftest import DatabaseFactory, skip_or_fail
from tests.helpers import NatsServer, async_wait_for, wait_for

HERE = Path(__file__).resolve().parent
PASSWORD = "s3cret-pw"


@dataclass
class PowerUnderTest:
    """A running power service, its parts, and every event it published."""

    rt: ServiceRuntime
    service: PowerService
    events: list[RawEvent] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    async def call(self, command: Command[Any, Any], payload: dict[str, Any]) -> Any:
        return await self.rt.bus.request(command, command.request.model_validate(payload))

    def of_type(self, name: str, bmc_id: int | None = None) -> list[RawEvent]:
        return [
            e
            for e in self.events
            if e.type == f"io.metalbus.power.{name}.v1"
            and (bmc_id is None or e.subject == str(bmc_id))
        ]

    async def wait_event(self, name: str, bmc_id: int, count: int = 1) -> list[RawEvent]:
        async def arrived() -> list[RawEvent] | None:
            found = self.of_type(name, bmc_id)
            return found if len(found) >= count else None

        result: list[RawEvent] = await async_wait_for(arrived, 10, f"{count} {name} event(s)")
        return result


def power_settings(nats_url: str, db: tuple[str, str | None], **overrides: Any) -> PowerSettings:
    url, schema = db
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "database_url": url,
        "database_schema": schema,
        "secret_key": Fernet.generate_key().decode(),
        "poll_enabled": False,  # tests sweep by hand
        "poll_interval_s": 0.5,
        "poll_jitter_s": 0.0,
        "query_timeout_s": 3.0,
        "action_retries": 1,
        "action_backoff_s": 0.05,
        "confirm_timeout_s": 5.0,
        "breaker_threshold": 2,
        "outbox_poll_s": 0.2,
    }
    values.update(overrides)
    return PowerSettings(**values)


async def start_power(settings: PowerSettings) -> PowerUnderTest:
    parts: list[PowerService] = []
    rt = ServiceRuntime(make_definition(parts.append), settings)
    await rt.start()
    under_test = PowerUnderTest(rt, parts[0])

    async def record(msg: Any) -> None:
        under_test.raw.append(msg.data)
        under_test.events.append(decode_raw(msg.data))

    await rt.bus.subscribe_events(subjects.service_events("power"), record)
    return under_test


@pytest.fixture
async def power(
    nats_server: NatsServer, db_factory: DatabaseFactory
) -> AsyncIterator[PowerUnderTest]:
    under_test = await start_power(power_settings(nats_server.url, db_factory()))
    try:
        yield under_test
    finally:
        await under_test.rt.stop()


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- OpenIPMI's ipmi_sim -----------------------------------------------------------------

CHASSIS_SCRIPT = """#!/bin/sh
# ipmi_sim's chassis: "<mc> get power boot" or "<mc> set power 1 [boot pxe]".
dir=$(dirname "$0")
mc=$1; op=$2; shift 2
if [ "$op" = get ]; then
  for what in "$@"; do
    case $what in
      power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)";;
      boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)";;
    esac
  done
else
  while [ $# -ge 2 ]; do
    echo "$1 $2" >> "$dir/sets.log"; echo "$2" > "$dir/$1"; shift 2
  done
fi
"""


@dataclass
class IpmiSim:
    """ipmi_sim listening on 127.0.0.1:port, user admin / PASSWORD."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "ipmi_sim",
                "-c",
                "lan.conf",
                "-f",
                "emu.cmds",
                "-n",
                "-s",
                str(self.folder / "state"),
            ],
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=(self.folder / "sim.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: self.ipmitool("chassis", "power", "status", check=False).returncode == 0,
            20,
            "ipmi_sim to answer ipmitool",
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def ipmitool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "ipmitool",
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "admin",
                "-P",
                PASSWORD,
                "-R",
                "1",
                "-N",
                "1",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=check,
        )

    @property
    def power(self) -> str:
        path = self.folder / "power"
        return "on" if path.exists() and path.read_text().strip() == "1" else "off"

    @property
    def boot(self) -> str:
        path = self.folder / "boot"
        return path.read_text().strip() if path.exists() else "default"

    @property
    def sets(self) -> list[str]:
        path = self.folder / "sets.log"
        return path.read_text().splitlines() if path.exists() else []

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "address": "127.0.0.1",
            "port": self.port,
            "username": "admin",
            "password": PASSWORD,
            **overrides,
        }


@pytest.fixture
def ipmi_sim(tmp_path: Path) -> Iterator[IpmiSim]:
    for tool in ("ipmi_sim", "ipmitool"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (Debian openipmi, ipmitool)")
    folder = tmp_path / "ipmi_sim"
    (folder / "state").mkdir(parents=True)
    script = folder / "chassis.sh"
    script.write_text(CHASSIS_SCRIPT)
    script.chmod(0o755)
    port = free_port()
    (folder / "lan.conf").write_text(
        f"""name "metalbus-test"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{script} 0x20"
user 2 true "admin" "{PASSWORD}" admin 10 none md2 md5 straight
"""
    )
    (folder / "emu.cmds").write_text(
        "mc_setbmc 0x20\n"
        "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
        "mc_enable 0x20\n"
    )
    sim = IpmiSim(folder, port)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


# -- pyghmi's BMC server ------------------------------------------------------------------


@dataclass
class BmcFarm:
    """BMCs served by tests/power/bmc_farm.py (even ones start on, odd ones off)."""

    process: subprocess.Popen[str]
    ports: list[int]
    addresses: list[str] | None = None  # with ``spread``: BMC i's own loopback address

    def command(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def settings(self, port: int) -> dict[str, Any]:
        address = "127.0.0.1"
        if self.addresses is not None:
            address = self.addresses[self.ports.index(port)]
        return {"address": address, "port": port, "username": "admin", "password": PASSWORD}


@contextlib.contextmanager
def run_farm(count: int, spread: int | None = None) -> Iterator[BmcFarm]:
    """``count`` BMCs in one process; with ``spread`` N, each on its own 127.N.x.y."""
    args = [sys.executable, str(HERE / "bmc_farm.py"), "--count", str(count)]
    if spread is not None:
        args += ["--spread", str(spread)]
    process = subprocess.Popen(
        [*args, "--password", PASSWORD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        words = process.stdout.readline().split()
        assert words and words[0] == "ready", f"bmc_farm did not start: {words}"
        addresses = process.stdout.readline().split()[1:] if spread is not None else None
        yield BmcFarm(process, [int(p) for p in words[1:]], addresses)
    finally:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def bmc_farm() -> Iterator[BmcFarm]:
    with run_farm(4) as farm:
        yield farm


# -- a webhook power endpoint -------------------------------------------------------------

WEBHOOK_TOKEN = "hook-token-123"


@dataclass
class Webhook:
    """``POST /on``, ``POST /off``, ``GET /status`` -> ``{"status": "running"|"stopped"}``."""

    server: ThreadingHTTPServer
    state: dict[str, Any]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "power_on_url": f"{self.base}/on",
            "power_off_url": f"{self.base}/off",
            "power_query_url": f"{self.base}/status",
            "token": WEBHOOK_TOKEN,
            **overrides,
        }


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    state: dict[str, Any] = {"running": False, "calls": []}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {WEBHOOK_TOKEN}":
                self.send_response(401)
                self.end_headers()
                return
            state["calls"].append(f"{self.command} {self.path}")
            if self.command == "POST" and self.path in ("/on", "/off"):
                state["running"] = self.path == "/on"
                body = b"{}"
            elif self.command == "GET" and self.path == "/status":
                word = "running" if state["running"] else "stopped"
                body = json.dumps({"status": word}).encode()
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # bound (and listening) here
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(server, state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# -- sushy-tools' Redfish emulator ----------------------------------------------------------


@dataclass
class Sushy:
    url: str
    system_id: str


@pytest.fixture
async def sushy(tmp_path: Path) -> AsyncIterator[Sushy]:
    """sushy-emulator on libvirt's test driver (its own in-memory host, domain ``test``)."""
    import bcrypt

    emulator = Path(sys.executable).parent / "sushy-emulator"
    if not emulator.exists():
        skip_or_fail("sushy-tools is not installed")
    htpasswd = tmp_path / "htpasswd"
    digest = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"admin:{digest}\n")
    config = tmp_path / "sushy.conf"
    config.write_text(f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}\n")
    port = free_port(socket.SOCK_STREAM)
    process = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block; waits are awaited)
        [
            str(emulator),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "--libvirt-uri",
            "test:///default",
            "--config",
            str(config),
        ],
        stdout=(tmp_path / "sushy.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(auth=("admin", PASSWORD)) as client:

            async def members() -> list[Any] | None:
                if process.poll() is not None:
                    raise RuntimeError((tmp_path / "sushy.log").read_text())
                try:
                    response = await client.get(f"{url}/redfish/v1/Systems")
                except httpx.TransportError:
                    return None
                return response.json()["Members"] if response.status_code == 200 else None

            found = await async_wait_for(members, 30, "sushy-emulator to serve Redfish")
        yield Sushy(url, found[0]["@odata.id"].rsplit("/", 1)[1])
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
