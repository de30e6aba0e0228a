"""Boot configs in table ``boot_config``, and the commands that set, read and clear them.

Every lookup reads the table (one primary-key read per config file a machine asks for), so
every replica answers with what was last set, whichever replica set it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast, get_args

from metalbus.shared.contract.boot import (
    BootConfigInfo,
    BootConfigRequest,
    BootConfigSet,
    BootPurpose,
)
from metalbus.shared.db import Database

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
        if row is None or row.purpose not in PURPOSES:
            return None
        return BootConfig(cast(Purpose, row.purpose), row.kernel, row.initrd, row.cmdline)

    async def set(self, request: BootConfigSet) -> BootConfigInfo:
        """``config_set``: replace what ``mac`` boots."""
        async with self.db.transaction() as session:
            fields: dict[str, Any] = {
                "purpose": request.purpose,
                "kernel": request.kernel,
                "initrd": request.initrd,
                "cmdline": request.cmdline,
                "updated_at": datetime.now(UTC),
            }
            row = await session.get(BootConfigRow, request.mac)
            if row is None:
                session.add(BootConfigRow(mac=request.mac, **fields))
            else:
                for name, value in fields.items():
                    setattr(row, name, value)
                session.add(row)
        return await self.info(BootConfigRequest(mac=request.mac))

    async def info(self, request: BootConfigRequest) -> BootConfigInfo:
        """``config_get``: what ``mac`` boots (the enlistment config when nothing is set)."""
        config = await self.get(request.mac)
        chosen = config or self.enlist
        return BootConfigInfo(
            mac=request.mac,
            purpose=chosen.purpose,
            kernel=chosen.kernel,
            initrd=chosen.initrd,
            cmdline=chosen.cmdline,
            is_default=config is None,
        )

    async def clear(self, request: BootConfigRequest) -> BootConfigInfo:
        """``config_clear``: forget ``mac``'s config; it enlists again."""
        async with self.db.transaction() as session:
            row = await session.get(BootConfigRow, request.mac)
            if row is not None:
                await session.delete(row)
        return await self.info(request)
