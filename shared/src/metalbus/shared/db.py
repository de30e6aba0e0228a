"""Database access: SQLite (WAL) by default, PostgreSQL by URL, alembic migrations per service.

SQLite runs through aiosqlite (its own thread) and PostgreSQL through asyncpg, so no
query blocks the event loop. Write transactions on SQLite start with ``BEGIN IMMEDIATE``:
a writer takes the lock up front instead of failing half-way with "database is locked".
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SHARED_VERSIONS = MIGRATIONS_DIR / "versions"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_LOCK = 0x6D6574616C627573  # "metalbus": one migrator at a time per database
OUTBOX_FLAG = "metalbus_outbox_staged"


def async_url(url: str) -> str:
    """Map a plain database URL onto the async driver metalbus uses for it."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


class Database:
    """One service's database: an async engine, transactions, migrations.

    Args:
        url: ``sqlite:///path/to.db`` or ``postgresql://user@host:port/db``.
        schema: PostgreSQL schema for this service's tables (created if missing).
    """

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = async_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema {schema!r} must be a lower-case SQL identifier")
        self.schema = schema if self.dialect == "postgresql" else None
        connect_args: dict[str, Any] = {}
        engine_args: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            connect_args["timeout"] = 30
        else:
            engine_args.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
            if self.schema:
                connect_args["server_settings"] = {"search_path": self.schema}
        self.engine: AsyncEngine = create_async_engine(
            self.url, connect_args=connect_args, **engine_args
        )
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        self._writer = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._reader = async_sessionmaker(
            self.engine.execution_options(metalbus_read_only=True),
            class_=AsyncSession,
            expire_on_commit=False,
        )
        self._commit_hooks: list[Callable[[], None]] = []

    def on_outbox_commit(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` after any transaction that staged outbox events commits."""
        self._commit_hooks.append(hook)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one write transaction: committed on success, rolled back on error."""
        async with self._writer() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            staged = session.info.pop(OUTBOX_FLAG, False)
        if staged:
            for hook in self._commit_hooks:
                hook()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading only (on SQLite it does not take the write lock)."""
        async with self._reader() as session:
            yield session

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def migrate(self, version_dirs: Sequence[Path] = ()) -> None:
        """Bring the schema up to date: the shared branch plus the service's own branches."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("path_separator", "os")
        locations = [SHARED_VERSIONS, *version_dirs]
        cfg.set_main_option("version_locations", ":".join(str(p) for p in locations))
        if self.schema:
            async with self.engine.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            await conn.run_sync(_upgrade, cfg)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def _upgrade(connection: Connection, cfg: Config) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "heads")


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get("metalbus_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
