"""Database access: SQLite (WAL) by default, PostgreSQL by URL, alembic migrations per service.

SQLite runs through aiosqlite (its own thread) and PostgreSQL through asyncpg, so no
query blocks the event loop. Write transactions on SQLite start with ``BEGIN IMMEDIATE``:
a writer takes the lock up front instead of failing half-way with "database is locked".

Hot, short write transactions can instead be written as plain functions of a synchronous
SQLAlchemy Core connection and run with :meth:`Database.run_transaction`: on SQLite the
whole transaction then costs one hop to a writer thread (aiosqlite costs one hop per
driver call, several per statement), on PostgreSQL it runs on the async connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SHARED_VERSIONS = MIGRATIONS_DIR / "versions"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_LOCK = 0x6D6574616C627573  # "metalbus": one migrator at a time per database
OUTBOX_FLAG = "metalbus_outbox_staged"
T = TypeVar("T")


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
        self._sync_engine: Engine | None = None
        self._writer_thread: ThreadPoolExecutor | None = None
        self._write_lock: asyncio.Lock | None = None
        if self.dialect == "sqlite":
            # One write transaction at a time in this process: writers queue here, in order,
            # not in SQLite's busy handler, which sleeps up to 100 ms between its tries.
            self._write_lock = asyncio.Lock()
            _configure_sqlite(self.engine.sync_engine)
            # The same file through the plain sqlite3 driver, for run_transaction: one
            # thread writes through it, so it never writes from two threads at once.
            self._sync_engine = create_engine(
                make_url(self.url).set(drivername="sqlite"),
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=1,
                max_overflow=0,
            )
            _configure_sqlite(self._sync_engine)
            self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
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
    async def _one_writer(self) -> AsyncIterator[None]:
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one write transaction: committed on success, rolled back on error.

        Do not open another write transaction (or :meth:`run_transaction`) inside it: on
        SQLite writers take turns, so the inner one would wait for the outer forever.
        """
        async with self._one_writer(), self._writer() as session:
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

    async def run_transaction(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(connection)`` as one write transaction and return what it returns.

        ``work`` uses SQLAlchemy Core on a synchronous connection and must not block on
        anything but the database. It commits when it returns and rolls back when it
        raises. Events staged with :func:`metalbus.shared.outbox.stage_on` wake the relay.
        """
        if self._writer_thread is not None:
            context = contextvars.copy_context()  # trace context for the staged events
            run = functools.partial(context.run, self._run_sqlite, work)
            async with self._one_writer():
                result, staged = await asyncio.get_running_loop().run_in_executor(
                    self._writer_thread, run
                )
        else:
            async with self.engine.begin() as connection:
                result = await connection.run_sync(work)
                staged = connection.sync_connection.info.pop(OUTBOX_FLAG, False)  # type: ignore[union-attr]
        if staged:
            for hook in self._commit_hooks:
                hook()
        return result

    def _run_sqlite(self, work: Callable[[Connection], T]) -> tuple[T, bool]:
        assert self._sync_engine is not None
        with self._sync_engine.begin() as connection:
            connection.info.pop(OUTBOX_FLAG, None)
            result = work(connection)
            staged = bool(connection.info.pop(OUTBOX_FLAG, False))
        return result, staged

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
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Replicas starting together: one migrates, the others wait here. The schema
                # is made under the lock too (two CREATE SCHEMA IF NOT EXISTS can collide).
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
                if self.schema:
                    await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            await conn.run_sync(_upgrade, cfg)

    async def checkpoint(self) -> None:
        """Copy the SQLite write-ahead log into the database (PASSIVE: never blocks writers).

        Run in the background every second or so (the runtime does), so that no committing
        writer pays for a checkpoint's fsync. Does nothing on PostgreSQL.
        """
        database = make_url(self.url).database
        if self.dialect == "sqlite" and database and database != ":memory:":
            await asyncio.to_thread(_checkpoint_sqlite, database)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        if self._writer_thread is not None and self._sync_engine is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._writer_thread, self._sync_engine.dispose
            )
            self._writer_thread.shutdown(wait=False)


def _upgrade(connection: Connection, cfg: Config) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "heads")


def _checkpoint_sqlite(path: str) -> None:
    # Its own short connection, outside any transaction (a checkpoint cannot run inside one).
    connection = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        connection.close()


def _configure_sqlite(sync_engine: Engine) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Checkpoints (they fsync) run in the background (Database.checkpoint); the automatic
        # one, which a committing writer would pay for, is only a safety net (~40 MB of WAL).
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get("metalbus_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
