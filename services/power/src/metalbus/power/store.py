"""BMC records: create, read, update, delete, each change committed with its event.

Settings are checked against the driver's model before anything is written; the secret
settings are sealed (:mod:`metalbus.power.secrets`) and the rest kept in clear, so a
:class:`~metalbus.shared.contract.power.Bmc` can be shown without ever opening the seal.
"""

from __future__ import annotations

import json
from concurrent.futures import Executor
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from metalbus.shared import outbox
from metalbus.shared.contract.power import (
    Bmc,
    BmcCreate,
    BmcCreated,
    BmcDeleted,
    BmcQuery,
    BmcUpdate,
    BmcUpdated,
    ById,
    DriverList,
    Page,
    PowerState,
    UpdateRequest,
)
from metalbus.shared.db import Database
from metalbus.shared.errors import Conflict, NotFound
from metalbus.shared.events import as_utc, new_event, utcnow
from metalbus.shared.secrets import SecretBox

from .drivers import DRIVERS, PowerDriver
from .drivers.base import DriverSettingsModel, secret_values
from .models import PowerBmc


class BmcStore:
    """The power service's BMC table, seen through the wire models."""

    def __init__(self, db: Database, box: SecretBox, executor: Executor) -> None:
        self.db = db
        self.box = box
        self.executor = executor

    # -- conversions ----------------------------------------------------------------------

    @staticmethod
    def driver_class(row: PowerBmc) -> type[PowerDriver]:  # type: ignore[type-arg]
        return DRIVERS[row.driver]  # type: ignore[index]

    def settings_of(self, row: PowerBmc) -> DriverSettingsModel:
        """The row's full settings, secrets opened (for the driver only, never shown)."""
        merged = {**json.loads(row.settings), **self.box.open(row.secrets)}
        return self.driver_class(row).validate(merged)

    def driver_for(self, row: PowerBmc) -> PowerDriver:  # type: ignore[type-arg]
        """A driver instance for one action or query on this BMC."""
        return self.driver_class(row)(self.settings_of(row), self.executor)

    def _store_settings(self, row: PowerBmc, model: DriverSettingsModel) -> None:
        driver = self.driver_class(row)
        secrets = driver.secret_fields()
        row.settings = json.dumps(model.model_dump(mode="json", exclude=set(secrets)))
        row.secrets = self.box.seal(secret_values(model, secrets))
        row.host = driver.host_of(model)

    def public(self, row: PowerBmc) -> Bmc:
        """The row as the wire shows it: no secrets, only their names."""
        assert row.id is not None
        secrets_set = sorted(self.box.open(row.secrets)) if row.secrets else []
        return Bmc(
            id=row.id,
            name=row.name,
            driver=row.driver,  # type: ignore[arg-type]
            settings=json.loads(row.settings),
            secrets_set=secrets_set,
            host=row.host,
            machine_id=row.machine_id,
            poll=row.poll,
            power_state=PowerState(row.power_state),
            power_state_at=as_utc(row.power_state_at) if row.power_state_at else None,
            reachable=row.reachable,
            last_error=row.last_error,
            created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
        )

    # -- commands -------------------------------------------------------------------------

    async def get_row(self, session: AsyncSession, bmc_id: int) -> PowerBmc:
        row = await session.get(PowerBmc, bmc_id)
        if row is None:
            raise NotFound(f"no BMC {bmc_id}", field="id")
        return row

    async def _name_free(
        self, session: AsyncSession, name: str, except_id: int | None, field: str = "name"
    ) -> None:
        query = select(PowerBmc.id).where(PowerBmc.name == name)
        if except_id is not None:
            query = query.where(PowerBmc.id != except_id)
        if (await session.exec(query)).first() is not None:
            raise Conflict(f"a BMC named {name!r} exists", field=field)

    async def create(self, req: BmcCreate) -> Bmc:
        model = DRIVERS[req.driver].validate(req.settings)
        now = utcnow()
        try:
            async with self.db.transaction() as session:
                await self._name_free(session, req.name, None)
                row = PowerBmc(
                    name=req.name,
                    driver=req.driver.value,
                    settings="{}",
                    machine_id=req.machine_id,
                    poll=req.poll,
                    created_at=now,
                    updated_at=now,
                )
                self._store_settings(row, model)
                session.add(row)
                await session.flush()
                bmc = self.public(row)
                outbox.stage(session, new_event(BmcCreated(bmc=bmc), subject=str(bmc.id)))
        except IntegrityError:
            raise Conflict(f"a BMC named {req.name!r} exists", field="name") from None
        return bmc

    async def get(self, req: ById) -> Bmc:
        async with self.db.read() as session:
            return self.public(await self.get_row(session, req.id))

    async def list(self, req: BmcQuery) -> Page[Bmc]:
        query = select(PowerBmc).where(col(PowerBmc.id) > req.after)
        if req.driver is not None:
            query = query.where(PowerBmc.driver == req.driver.value)
        if req.machine_id is not None:
            query = query.where(PowerBmc.machine_id == req.machine_id)
        if req.power_state is not None:
            query = query.where(PowerBmc.power_state == req.power_state.value)
        async with self.db.read() as session:
            rows = (await session.exec(query.order_by(col(PowerBmc.id)).limit(req.limit + 1))).all()
        items = [self.public(r) for r in rows[: req.limit]]
        return Page[Bmc](items=items, next=items[-1].id if len(rows) > req.limit else None)

    async def update(self, req: UpdateRequest[BmcUpdate]) -> Bmc:
        changes = req.changes
        try:
            async with self.db.transaction() as session:
                row = await self.get_row(session, req.id)
                if changes.name is not None and changes.name != row.name:
                    await self._name_free(session, changes.name, row.id, "changes.name")
                    row.name = changes.name
                if changes.settings is not None:
                    merged: dict[str, Any] = {
                        **json.loads(row.settings),
                        **self.box.open(row.secrets),
                    }
                    for key, value in changes.settings.items():
                        if value is None:
                            merged.pop(key, None)
                        else:
                            merged[key] = value
                    self._store_settings(row, self.driver_class(row).validate(merged))
                if "machine_id" in changes.model_fields_set:
                    row.machine_id = changes.machine_id
                if changes.poll is not None:
                    row.poll = changes.poll
                row.updated_at = utcnow()
                session.add(row)
                await session.flush()
                bmc = self.public(row)
                outbox.stage(session, new_event(BmcUpdated(bmc=bmc), subject=str(bmc.id)))
        except IntegrityError:
            raise Conflict(f"a BMC named {changes.name!r} exists", field="changes.name") from None
        return bmc

    async def delete(self, req: ById) -> Bmc:
        async with self.db.transaction() as session:
            row = await self.get_row(session, req.id)
            bmc = self.public(row)
            await session.delete(row)
            outbox.stage(session, new_event(BmcDeleted(bmc=bmc), subject=str(bmc.id)))
        return bmc

    async def count(self) -> int:
        async with self.db.read() as session:
            return int((await session.exec(select(func.count()).select_from(PowerBmc))).one())

    @staticmethod
    def drivers() -> DriverList:
        return DriverList(drivers=[d.info() for d in DRIVERS.values()])
