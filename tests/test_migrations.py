"""Each service's migrations build exactly the tables its models describe (SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from sqlmodel import SQLModel

import metalbus.api.models  # noqa: F401  (registers the api tables)
from metalbus.api.app import MIGRATIONS as API_MIGRATIONS
from metalbus.api.models import API_TABLES
from metalbus.boot.models import BOOT_TABLES
from metalbus.boot.service import MIGRATIONS as BOOT_MIGRATIONS
from metalbus.compose.models import COMPOSE_TABLES
from metalbus.compose.service import MIGRATIONS as COMPOSE_MIGRATIONS
from metalbus.discovery.models import DISCOVERY_TABLES
from metalbus.discovery.service import MIGRATIONS as DISCOVERY_MIGRATIONS
from metalbus.ipam.models import IPAM_TABLES
from metalbus.ipam.service import MIGRATIONS as IPAM_MIGRATIONS
from metalbus.power.models import POWER_TABLES
from metalbus.power.service import MIGRATIONS as POWER_MIGRATIONS
from metalbus.shared.db import Database
from metalbus.shared.messaging import MESSAGING_TABLES
from tests.conftest import DatabaseFactory


def metadata_of(tables: frozenset[str]) -> MetaData:
    subset = MetaData()
    for name in tables:
        SQLModel.metadata.tables[name].to_metadata(subset)
    return subset


@pytest.mark.parametrize(
    ("migrations", "tables"),
    [
        ([], MESSAGING_TABLES),
        ([API_MIGRATIONS], MESSAGING_TABLES | API_TABLES),
        ([IPAM_MIGRATIONS], MESSAGING_TABLES | IPAM_TABLES),
        ([POWER_MIGRATIONS], MESSAGING_TABLES | POWER_TABLES),
        ([COMPOSE_MIGRATIONS], MESSAGING_TABLES | COMPOSE_TABLES),
        ([BOOT_MIGRATIONS], MESSAGING_TABLES | BOOT_TABLES),
        ([DISCOVERY_MIGRATIONS], MESSAGING_TABLES | DISCOVERY_TABLES),
    ],
    ids=["shared", "api", "ipam", "power", "compose", "boot", "discovery"],
)
async def test_migrations_match_models(
    db_factory: DatabaseFactory, migrations: list[Path], tables: frozenset[str]
) -> None:
    url, schema = db_factory()
    db = Database(url, schema=schema)
    try:
        await db.migrate(migrations)
        await db.migrate(migrations)  # a second run (a restart, another replica) changes nothing
        expected = metadata_of(tables)

        def diff(conn):  # type: ignore[no-untyped-def]
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_name": lambda name, kind, _: (
                        kind != "table" or name in tables | {"alembic_version"}
                    )
                },
            )
            present = set(inspect(conn).get_table_names())
            return compare_metadata(context, expected), present

        async with db.engine.connect() as conn:
            differences, present = await conn.run_sync(diff)
        assert differences == []
        assert present == set(tables) | {"alembic_version"}
    finally:
        await db.dispose()
