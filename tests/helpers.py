"""Real peers for the tests: a nats-server per test, PostgreSQL schemas, an in-loop API server."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from metalbus.shared.runtime import EmbeddedServer

NATS_BINARY = str(Path(sys.executable).parent / "nats-server")
_LISTENING = re.compile(rb"Listening for client connections on [\d.]+:(\d+)")


class NatsServer:
    """A real nats-server with JetStream in a temporary folder, on a random port.

    ``stop()`` and ``start()`` again keep the port and the JetStream store, so a test can
    take the bus away and bring it back.
    """

    def __init__(self, store: Path, config: Path | None = None) -> None:
        self.store = store
        self.config = config  # a config file (users, TLS) on top of the flags below
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = store / "nats.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        port = str(self.port) if self.port else "-1"
        self.log.write_bytes(b"")
        self.process = subprocess.Popen(
            [
                NATS_BINARY,
                "-a",
                "127.0.0.1",
                "-p",
                port,
                "-js",
                "-sd",
                str(self.store),
                "-l",
                str(self.log),
                *(["-c", str(self.config)] if self.config else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def listening() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()}")
            match = _LISTENING.search(self.log.read_bytes())
            if match and b"Server is ready" in self.log.read_bytes():
                self.port = int(match.group(1))
                return True
            return False

        wait_for(listening, 20, "nats-server to listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def wait_for(check: Callable[[], Any], deadline_s: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after the deadline."""
    stop_at = time.monotonic() + deadline_s
    pause = 0.01
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > stop_at:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(pause)  # polling interval with a deadline, not a wait for something to happen
        pause = min(pause * 2, 0.2)


async def async_wait_for(check: Callable[[], Any], deadline_s: float, what: str) -> Any:
    """``wait_for`` inside the event loop; ``check`` may be a coroutine function or a plain one."""
    stop_at = time.monotonic() + deadline_s
    pause = 0.01
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > stop_at:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        await asyncio.sleep(pause)  # polling interval with a deadline
        pause = min(pause * 2, 0.2)


class InLoopServer:
    """An ASGI app served by uvicorn inside the test's event loop, on a random port."""

    def __init__(self, app: Any) -> None:
        self.server = EmbeddedServer(
            uvicorn.Config(
                app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on"
            )
        )
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> str:
        self.task = asyncio.create_task(self.server.serve())

        async def started() -> bool:
            if self.task is not None and self.task.done():
                self.task.result()
                raise RuntimeError("server stopped during start-up")
            return bool(self.server.started)

        await async_wait_for(started, 30, "the API server to start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def postgres_url() -> str:
    """The PostgreSQL the tests use (the machines run one on 127.0.0.1:5432, database test)."""
    return os.environ.get("METALBUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
