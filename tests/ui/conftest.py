"""The web UI in a real headless Chromium against a running system.

The system: a real nats-server, ipam and compose (libvirt's test driver, the host files of
``tests/compose/hosts``), power, and the api (uvicorn in the test's loop, as in
``tests/api``); the discovery tests add a discovery service watching a network namespace
(``tests/discovery``). The browser is Debian's chromium (``/usr/bin/chromium``) driven by
playwright's Python package, which never downloads a browser of its own here.

Every page the tests open records the browser console: an error there fails the test.
Screenshots go to ``test-artifacts/ui/<test>/`` (ignored by git; ``METALBUS_UI_ARTIFACTS``
moves it) so a person can look at what the tests saw.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from metalbus.api.app import create_app
from metalbus.discovery.service import DEFINITION as DISCOVERY
from metalbus.discovery.settings import DiscoverySettings
from metalbus.shared.runtime import ServiceRuntime
from tests.api.conftest import ADMIN_TOKEN, api_settings
from tests.compose.conftest import ComposeUnderTest, compose, compose_settings  # noqa: F401
from tests.compose.test_api import ok  # noqa: F401 (the tests' check of an API answer)
from tests.conftest import DatabaseFactory, skip_or_fail
from tests.helpers import InLoopServer, NatsServer
from tests.power.conftest import power_settings, start_power

try:
    from playwright.async_api import expect
except ImportError:  # the chromium fixture skips (or fails in CI) saying so
    expect = None

CHROMIUM = os.environ.get("METALBUS_CHROMIUM", "/usr/bin/chromium")
TOKEN = ADMIN_TOKEN
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("METALBUS_UI_ARTIFACTS", ROOT / "test-artifacts" / "ui"))
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class UiSystem:
    """The running system: the api's base URL, an HTTP client with the admin token, compose,
    and the api's app (its event hub, to cut the live streams)."""

    url: str
    http: httpx.AsyncClient
    compose: ComposeUnderTest
    nats: NatsServer
    app: Any


@pytest.fixture
def discovery_interfaces() -> list[str]:
    """The interfaces discovery listens on: none, unless a test module overrides this."""
    return []


@pytest.fixture
async def system(
    compose: ComposeUnderTest,  # noqa: F811
    nats_server: NatsServer,
    db_factory: DatabaseFactory,
    discovery_interfaces: list[str],
) -> AsyncIterator[UiSystem]:
    power = await start_power(power_settings(nats_server.url, db_factory(), poll_enabled=False))
    url, schema = db_factory()
    discovery = ServiceRuntime(
        DISCOVERY,
        DiscoverySettings(
            nats_url=nats_server.url,
            database_url=url,
            database_schema=schema,
            interfaces=discovery_interfaces,
            outbox_poll_s=0.2,
            flush_interval_s=0.05,
        ),
    )
    await discovery.start()
    app = create_app(api_settings(nats_server.url, db_factory()))
    try:
        async with (
            InLoopServer(app) as base,
            httpx.AsyncClient(
                base_url=f"{base}/api/v1",
                timeout=60,
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as http,
        ):
            yield UiSystem(base, http, compose, nats_server, app)
    finally:
        await discovery.stop()
        await power.rt.stop()


@dataclass
class Tab:
    """One browser page: its console errors and its screenshots."""

    page: Any
    base: str
    shots: Path
    errors: list[str] = field(default_factory=list)
    taken: int = 0

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base + path)
        # The script marks the page ready once its first load is done.
        await self.page.wait_for_selector("body[data-ready='true']")

    async def login(self, token: str = TOKEN) -> None:
        await self.page.goto(self.base + "/ui/login")
        await self.page.get_by_label("API token").fill(token)
        await self.page.get_by_role("button", name="Log in").click()
        await self.page.wait_for_selector("body[data-ready='true']")

    async def shot(self, name: str) -> Path:
        self.taken += 1
        path = self.shots / f"{self.taken:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        assert self.errors == [], f"errors in the browser console: {self.errors}"


@pytest.fixture
def chromium() -> str:
    """Debian's chromium and playwright, or a skip (a failure in CI) saying which is missing."""
    if not Path(CHROMIUM).is_file():
        skip_or_fail(f"{CHROMIUM} is missing (scripts/install-system-packages.sh has chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        skip_or_fail("playwright is not installed (make install)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str, system: UiSystem) -> AsyncIterator[Any]:
    """Headless Chromium; it depends on ``system`` so it closes before the server stops
    (uvicorn waits for open connections, and the event stream is one)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def open_tab(browser: Any, system: UiSystem, request: pytest.FixtureRequest) -> Any:
    """Opens a page at a viewport size, recording console errors and uncaught exceptions."""
    shots = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)

    async def new(viewport: dict[str, int], name: str) -> Tab:
        context = await browser.new_context(viewport=viewport, is_mobile=viewport == PHONE)
        page = await context.new_page()
        page.set_default_timeout(20_000)
        where = shots / name
        where.mkdir(exist_ok=True)
        tab = Tab(page, system.url, where)
        page.on(
            "console",
            lambda msg: (
                tab.errors.append(f"{msg.text} at {msg.location}") if msg.type == "error" else None
            ),
        )
        page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))
        return tab

    return new
