"""Boot configs in table ``boot_config``, and the commands that set, read and clear them.

Every lookup reads the table (one primary-key read per config file a machine asks for), so
every replica answers with what was last set, whichever replica set it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast, get_args

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared.contract.boot import (
    BootConfigInfo,
    BootConfigRequest,
    BootConfigSet,
    BootPurpose,
)
from metalbus.shared.db import Database
from metalbus.shared.errors import Conflict

from ..models import BootConfigRow
from .render import BootConfig, Purpose

PURPOSES = frozenset(get_args(BootPurpose))


class ConfigStore:
    """The table, as the provider's source and as the commands' handlers."""

    def __init__(self, db: Database, enlist: BootConfig) -> None:
        self.db = db
        self.enlist = enlist

    async def get(self, mac: str) -> BootConfig | None:
        """The config set for ``mac`` (lower-case, colons), or None."""
        async with self.db.read() as session:
            row = await session.get(BootConfigRow, mac)
        return _config(row)

    async def get_by_uuid(self, uuid: str) -> tuple[str, BootConfig] | None:
        """The MAC and config set with machine UUID ``uuid`` (lower case), or None."""
        async with self.db.read() as session:
            row = await _holder(session, uuid)
        config = _config(row)
        return (row.mac, config) if row is not None and config is not None else None

    async def set(self, request: BootConfigSet) -> BootConfigInfo:
        """``config_set``: replace what ``mac`` boots.

        Raises:
            Conflict: another MAC's config holds the UUID (field ``uuid``).
        """
        try:
            async with self.db.transaction() as session:
                if request.uuid is not None:
                    holder = await _holder(session, request.uuid)
                    if holder is not None and holder.mac != request.mac:
                        raise _uuid_taken(request.uuid, holder.mac)
                fields: dict[str, Any] = {
                    "purpose": request.purpose,
                    "kernel": request.kernel,
                    "initrd": request.initrd,
                    "cmdline": request.cmdline,
                    "uuid": request.uuid,
                    "updated_at": datetime.now(UTC),
                }
                row = await session.get(BootConfigRow, request.mac)
                if row is None:
                    session.add(BootConfigRow(mac=request.mac, **fields))
                else:
                    for name, value in fields.items():
                        setattr(row, name, value)
                    session.add(row)
        except IntegrityError as exc:  # two replicas setting the same UUID at once
            raise _uuid_taken(request.uuid or "", None) from exc
        return await self.info(BootConfigRequest(mac=request.mac))

    async def info(self, request: BootConfigRequest) -> BootConfigInfo:
        """``config_get``: what ``mac`` boots (the enlistment config when nothing is set)."""
        async with self.db.read() as session:
            row = await session.get(BootConfigRow, request.mac)
        config = _config(row)
        chosen = config or self.enlist
        return BootConfigInfo(
            mac=request.mac,
            purpose=chosen.purpose,
            kernel=chosen.kernel,
            initrd=chosen.initrd,
            cmdline=chosen.cmdline,
            uuid=row.uuid if row is not None and config is not None else None,
            is_default=config is None,
        )

    async def clear(self, request: BootConfigRequest) -> BootConfigInfo:
        """``config_clear``: forget ``mac``'s config; it enlists again."""
        async with self.db.transaction() as session:
            row = await session.get(BootConfigRow, request.mac)
            if row is not None:
                await session.delete(row)
        return await self.info(request)


async def _holder(session: AsyncSession, uuid: str) -> BootConfigRow | None:
    query = select(BootConfigRow).where(BootConfigRow.uuid == uuid)
    return (await session.exec(query)).first()


def _config(row: BootConfigRow | None) -> BootConfig | None:
    if row is None or row.purpose not in PURPOSES:
        return None
    return BootConfig(cast(Purpose, row.purpose), row.kernel, row.initrd, row.cmdline)


def _uuid_taken(uuid: str, mac: str | None) -> Conflict:
    holder = f" by {mac}" if mac else ""
    return Conflict(f"machine UUID {uuid} is already used{holder}", field="uuid")
