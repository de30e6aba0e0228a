"""The CLI against a real system: api, ipam, compose (libvirt's test driver), power and
discovery on a real nats-server and real databases.

The API is served in the test's event loop (InLoopServer); the CLI is blocking, so each
command runs in a worker thread (``asyncio.to_thread``) while the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from metalbus.api.app import create_app
from metalbus.api.settings import ApiSettings
from metalbus.cli.main import app
from metalbus.discovery.service import DEFINITION as DISCOVERY
from metalbus.discovery.settings import DiscoverySettings
from metalbus.shared.runtime import ServiceRuntime
from tests.compose.conftest import (  # noqa: F401 (fixtures used here)
    ComposeUnderTest,
    compose,
    compose_settings,
)
from tests.conftest import DatabaseFactory
from tests.discovery.conftest import link  # noqa: F401 (a fixture: a namespace to watch)
from tests.helpers import InLoopServer, NatsServer
from tests.power.conftest import power_settings, start_power

TOKEN = "mb_000000000001.admin-secret-for-tests-only-0123456789"


@dataclass
class Ran:
    """A finished command: its exit code, stdout, stderr."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class System:
    url: str
    config: Path
    compose: ComposeUnderTest
    nats_url: str
    discovery_database: tuple[str, str | None]
    discovery: ServiceRuntime | None = None

    async def start_discovery(self, **settings: Any) -> None:
        """(Re)start discovery with these settings (``interfaces=[...]`` to listen)."""
        if self.discovery is not None:
            await self.discovery.stop()
            self.discovery = None
        url, schema = self.discovery_database
        runtime = ServiceRuntime(
            DISCOVERY,
            DiscoverySettings(
                nats_url=self.nats_url,
                database_url=url,
                database_schema=schema,
                outbox_poll_s=0.2,
                flush_interval_s=0.05,
                **settings,
            ),
        )
        await runtime.start()
        self.discovery = runtime

    async def cli(self, *args: str, input: str | None = None) -> Ran:
        """Run ``metalbus *args`` (in a worker thread: the API serves from this loop)."""
        runner = CliRunner()
        env = {"METALBUS_CONFIG": str(self.config), "COLUMNS": "250"}
        result: Result = await asyncio.to_thread(
            runner.invoke, app, list(args), input=input, env=env, catch_exceptions=False
        )
        return Ran(result.exit_code, result.stdout, result.stderr)

    async def spawn(self, *args: str) -> asyncio.subprocess.Process:
        """``metalbus *args`` as a process of the console script (for a command that runs
        beside others: CliRunner swaps sys.stdout for the whole process)."""
        env = {**os.environ, "METALBUS_CONFIG": str(self.config)}
        return await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("metalbus")),
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def ok(self, *args: str) -> Any:
        """Run a command that must succeed with --json; its output, parsed."""
        ran = await self.cli(*args, "--json")
        assert ran.code == 0, f"{args}: {ran.code} {ran.stderr}"
        return ran.json()

    async def fails(self, code: int, field: str, *args: str) -> str:
        """Run a command that must fail with ``code`` on one stderr line naming ``field``."""
        ran = await self.cli(*args)
        assert ran.code == code, f"{args}: {ran.code} {ran.stdout} {ran.stderr}"
        lines = ran.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), ran.stderr
        assert f"{field}: " in lines[0], lines[0]
        return lines[0]


@pytest.fixture
async def system(
    compose: ComposeUnderTest,  # noqa: F811 (the fixture imported above)
    nats_server: NatsServer,
    db_factory: DatabaseFactory,
    tmp_path: Path,
) -> AsyncIterator[System]:
    power = await start_power(power_settings(nats_server.url, db_factory()))
    url, schema = db_factory()
    settings = ApiSettings(
        nats_url=nats_server.url,
        database_url=url,
        database_schema=schema,
        port=0,
        bootstrap_token=TOKEN,
        sse_heartbeat_s=0.5,
    )
    made = System("", tmp_path / "config" / "profiles.json", compose, nats_server.url, db_factory())
    try:
        await made.start_discovery()
        async with InLoopServer(create_app(settings)) as base:
            made.url = base
            yield made
    finally:
        if made.discovery is not None:
            await made.discovery.stop()
        await power.rt.stop()


@pytest.fixture
def test_domain() -> Iterator[None]:
    """libvirt's ``test:///default`` with its domain ``test`` running. That host is shared
    by the connections of this process and lives while one is open: holding one keeps the
    state the test sets, whatever connections the power service opens and closes."""
    libvirt = pytest.importorskip("libvirt")
    conn = libvirt.open("test:///default")
    try:
        domain = conn.lookupByName("test")
        if not domain.isActive():
            domain.create()
        yield
    finally:
        conn.close()


@pytest.fixture
async def admin(system: System) -> System:
    """The system with profile ``admin`` logged in."""
    ran = await system.cli("login", "admin", system.url, TOKEN)
    assert ran.code == 0, ran.stderr
    return system
