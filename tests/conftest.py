"""Fixtures: a real nats-server per test, SQLite and PostgreSQL databases, an API server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import NatsServer, postgres_url

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip with a printed reason; in CI such a skip is a failure."""
    if IN_CI:
        pytest.fail(f"must run in CI but cannot: {reason}")
    pytest.skip(reason)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream for this test only."""
    store = tmp_path / "nats"
    store.mkdir()
    server = NatsServer(store)
    server.start()
    try:
        yield server
    finally:
        server.stop()


_pg_reachable: bool | None = None


async def _postgres_reachable() -> bool:
    global _pg_reachable
    if _pg_reachable is None:
        try:
            conn = await asyncpg.connect(postgres_url(), timeout=3)
            await conn.close()
            _pg_reachable = True
        except (TimeoutError, OSError, asyncpg.PostgresError):
            _pg_reachable = False
    return _pg_reachable


DatabaseFactory = Callable[[], tuple[str, str | None]]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DatabaseFactory]:
    """Makes fresh databases, one per call, as (URL, schema): SQLite files, or schemas in
    the test PostgreSQL (one schema per service, as in production). All dropped afterwards."""
    made: list[str] = []
    if request.param == "postgresql" and not await _postgres_reachable():
        skip_or_fail(f"PostgreSQL not reachable at {postgres_url()}")

    def new() -> tuple[str, str | None]:
        name = f"t_{uuid.uuid4().hex[:12]}"
        made.append(name)
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.db')}", None
        return postgres_url(), name

    yield new
    if request.param == "postgresql":
        conn = await asyncpg.connect(postgres_url())
        try:
            for schema in made:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
