"""The flows that drive machines through the other services, resumable after a restart.

A flow is a list of steps kept on the machine row (``flow``, ``flow_step``). The driver
runs a step's commands (boot, power, ipam, compose) *outside* any database transaction
(they can take minutes, and on SQLite a write transaction holds the only writer), then
records the outcome in one short transaction that also moves the machine to the next step
and stages a ``machine.step`` event. Every command a step sends is safe to send twice
(boot configs are set, power-on never cycles, ipam allocations carry an idempotency key),
so a crash between the command and the record only repeats the step after restart.

A step that fails for a passing reason (a service down, a time-out) is retried with
back-off; any other failure moves the machine to its failed status. A step that waits for
the machine itself (``wait_callback``) is not run: the boot environment's callback moves
the flow on (see :mod:`.callbacks`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from opentelemetry import trace
from sqlmodel import col, or_, select

from metalbus.shared import telemetry
from metalbus.shared.commands import Empty
from metalbus.shared.contract import boot as b
from metalbus.shared.contract import compose as c
from metalbus.shared.contract import ipam as ip
from metalbus.shared.contract import machines as m
from metalbus.shared.contract import power as p
from metalbus.shared.errors import Conflict, MetalbusError, NotFound
from metalbus.shared.events import as_utc, utcnow
from metalbus.shared.runtime import ServiceRuntime
from metalbus.shared.tasks import cancel_all

from ..settings import ApiSettings
from . import store
from .models import LinkMode, Machine, MachineLink, ResourcePool, Zone
from .states import TIMED, Action

log = logging.getLogger(__name__)
S = m.MachineStatus
WAIT = "wait_callback"

FLOWS: dict[str, list[str]] = {
    "commission": ["boot_config", "power_on", WAIT],
    "settle": ["power_off", "boot_local"],
    "deploy": ["allocate_ips", "boot_config", "power_on", WAIT],
    "deployed": ["boot_local", "register_kvm_host"],
    "release": ["power_off", "release_ips", "boot_local", "decompose", "released"],
    "rescue": ["boot_config", "power_on"],
    "exit_rescue": ["power_off", "boot_local"],
    "test": ["boot_config", "power_on", WAIT],
}
"""Each flow's steps in order; a flow ends after its last step."""

PURPOSE: dict[str, b.BootPurpose] = {
    "commission": "commissioning",
    "deploy": "deploy",
    "rescue": "commissioning",
    "test": "commissioning",
}
"""What each flow that boots an environment has the machine boot (boot's purposes)."""


def first_step(flow: str) -> str:
    return FLOWS[flow][0]


@dataclass
class Outcome:
    """What a step did, to be recorded with the move to the next step."""

    detail: str = ""
    columns: dict[str, Any] = field(default_factory=dict)
    links: dict[int, tuple[str | None, int | None]] = field(default_factory=dict)
    delete: bool = False
    move: Action | None = None


@dataclass
class Snapshot:
    """A machine as a step sees it (read before the step, outside any transaction)."""

    machine: Machine
    macs: list[str]
    links: list[tuple[MachineLink, str]]  # each link with its interface's MAC
    zone: str
    pool: str


class FlowDriver:
    """Runs pending flow steps and times stuck machines out (on replicas with flows_enabled)."""

    def __init__(self, runtime: ServiceRuntime, settings: ApiSettings) -> None:
        self.rt = runtime
        self.settings = settings
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._boot_device: dict[str, bool] | None = None
        self._steps: dict[str, Callable[[Snapshot], Awaitable[Outcome]]] = {
            "boot_config": self._boot_config,
            "boot_local": self._boot_local,
            "power_on": self._power_on,
            "power_off": self._power_off,
            "allocate_ips": self._allocate_ips,
            "release_ips": self._release_ips,
            "decompose": self._decompose,
            "released": self._released,
            "register_kvm_host": self._register_kvm_host,
        }

    def wake(self) -> None:
        """Look for pending steps now (a route or a callback just set one)."""
        self._wake.set()

    # -- the loops ----------------------------------------------------------------------

    async def run(self) -> None:
        """Start each pending step once, at most ``flow_concurrency`` at a time."""
        try:
            while True:
                self._wake.clear()
                for system_id in await self._due():
                    if len(self._running) >= self.settings.flow_concurrency:
                        break
                    if system_id not in self._running:
                        task = asyncio.create_task(self._advance(system_id))
                        self._running[system_id] = task
                        task.add_done_callback(lambda t, s=system_id: self._done(s, t))
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.flow_poll_s)
                except TimeoutError:
                    pass
        finally:
            await cancel_all(list(self._running.values()))

    def _done(self, system_id: str, task: asyncio.Task[None]) -> None:
        self._running.pop(system_id, None)
        if not task.cancelled() and task.exception() is not None:
            # Recording the outcome failed (the database, most likely): the step stays
            # pending and runs again on the next pass.
            log.error("machine %s: step not recorded", system_id, exc_info=task.exception())
        self._wake.set()  # a finished step may have a next one, or a slot freed up

    async def _due(self) -> list[str]:
        now = utcnow()
        query = (
            select(Machine.system_id)
            .where(col(Machine.flow_step).is_not(None), Machine.flow_step != WAIT)
            .where(or_(col(Machine.flow_next_at).is_(None), col(Machine.flow_next_at) <= now))
            .order_by(col(Machine.id))
            .limit(self.settings.flow_concurrency * 4)
        )
        try:
            async with self.rt.db.read() as session:
                return list((await session.exec(query)).all())
        except Exception:
            log.exception("looking for pending machine steps failed")
            return []

    async def sweep_timeouts(self) -> None:
        """Move machines stuck in a flow status past its time-out to the failed status."""
        limits = {
            S.COMMISSIONING: self.settings.commissioning_timeout_s,
            S.DEPLOYING: self.settings.deploying_timeout_s,
            S.RELEASING: self.settings.releasing_timeout_s,
            S.TESTING: self.settings.testing_timeout_s,
        }
        assert set(limits) == TIMED
        while True:
            try:
                await self.time_out(limits)
            except Exception:
                log.exception("timing out stuck machines failed")
            await asyncio.sleep(self.settings.timeout_sweep_s)  # the sweep's period

    async def time_out(self, limits: dict[S, float]) -> int:
        """One sweep; returns how many machines were timed out."""
        now = utcnow()
        count = 0
        for status, limit in limits.items():
            async with self.rt.db.transaction() as session:
                cutoff = now - timedelta(seconds=limit)
                query = select(Machine).where(
                    Machine.status == status,
                    col(Machine.status_changed_at) < cutoff,
                    # a machine fetching boot files is booting, not stuck
                    or_(
                        col(Machine.boot_progress_at).is_(None),
                        col(Machine.boot_progress_at) < cutoff,
                    ),
                )
                for machine in (await session.exec(query)).all():
                    if machine.system_id in self._running:
                        continue  # its step is in flight: let it end first
                    await store.move(
                        session,
                        machine,
                        Action.TIMEOUT,
                        f"no progress in {status.value} for {limit:g} s",
                    )
                    machine.token_hash = None
                    count += 1
        return count

    # -- one step -----------------------------------------------------------------------

    async def _advance(self, system_id: str) -> None:
        snapshot = await self._snapshot(system_id)
        if snapshot is None:
            return
        machine = snapshot.machine
        flow, step = machine.flow, machine.flow_step
        assert flow is not None and step is not None
        with telemetry.span(
            f"machine {flow}.{step}",
            kind=trace.SpanKind.INTERNAL,
            carrier=json.loads(machine.flow_trace or "{}"),
            attributes={"metalbus.machine": system_id},
        ):
            try:
                outcome = await self._steps[step](snapshot)
            except MetalbusError as exc:
                await self._failed(system_id, flow, step, exc)
                return
            except Exception as exc:
                log.exception("machine %s: step %s of %s crashed", system_id, step, flow)
                await self._failed(system_id, flow, step, exc)
                return
            await self._record(system_id, flow, step, outcome)

    async def _snapshot(self, system_id: str) -> Snapshot | None:
        async with self.rt.db.read() as session:
            try:
                machine = await store.get_machine(session, system_id)
            except NotFound:
                return None
            if machine.flow_step is None or machine.flow_step == WAIT:
                return None
            interfaces = await store.interfaces_of(session, machine)
            macs = {i.id: i.mac for i in interfaces}
            links = [
                (link, macs[link.interface_id])
                for link in await store.links_of(session, interfaces)
            ]
            zone = await session.get(Zone, machine.zone_id)
            pool = await session.get(ResourcePool, machine.pool_id)
            assert zone is not None and pool is not None
            return Snapshot(machine, list(macs.values()), links, zone.name, pool.name)

    async def _current(self, session: Any, system_id: str, flow: str, step: str) -> Machine | None:
        """The machine if it is still at ``flow``/``step`` (an abort, a release or a
        callback may have moved it on while the step ran: then the outcome is dropped)."""
        try:
            machine = await store.get_machine(session, system_id, lock=True)
        except NotFound:
            return None
        if machine.flow != flow or machine.flow_step != step:
            log.info("machine %s moved on during %s/%s; outcome dropped", system_id, flow, step)
            return None
        return machine

    async def _record(self, system_id: str, flow: str, step: str, outcome: Outcome) -> None:
        async with self.rt.db.transaction() as session:
            machine = await self._current(session, system_id, flow, step)
            if machine is None:
                return
            for name, value in outcome.columns.items():
                setattr(machine, name, value)
            for link_id, (address, address_id) in outcome.links.items():
                link = await session.get(MachineLink, link_id)
                if link is not None:
                    link.ip, link.ip_id = address, address_id
                    session.add(link)
            store.stage(
                session,
                m.MachineFlowStep(system_id=system_id, flow=flow, step=step, detail=outcome.detail),
                system_id,
            )
            if outcome.delete:
                await store.delete_machine(session, machine)
                return
            if outcome.move is not None:
                await store.move(session, machine, outcome.move, outcome.detail)
            steps = FLOWS[flow]
            following = steps[steps.index(step) + 1] if step != steps[-1] else None
            machine.flow_step = following
            machine.flow = flow if following is not None else None
            machine.flow_attempts = 0
            machine.flow_next_at = None
            machine.flow_error = None
            if outcome.links or set(outcome.columns) - {"token_hash"}:
                await store.changed(session, machine)
            else:
                session.add(machine)
        log.info("machine %s: %s/%s done %s", system_id, flow, step, outcome.detail)

    async def _failed(self, system_id: str, flow: str, step: str, exc: Exception) -> None:
        message = f"{step}: {exc}"[:1024]
        retry = isinstance(exc, MetalbusError) and exc.retryable
        async with self.rt.db.transaction() as session:
            machine = await self._current(session, system_id, flow, step)
            if machine is None:
                return
            machine.flow_error = message
            if retry:
                machine.flow_attempts += 1
                delay = min(
                    self.settings.flow_retry_s * 2 ** (machine.flow_attempts - 1),
                    self.settings.flow_retry_max_s,
                )
                machine.flow_next_at = utcnow() + timedelta(seconds=delay)
                session.add(machine)
                log.warning("machine %s: %s (retry in %.1f s)", system_id, message, delay)
                return
            log.warning("machine %s: %s (flow %s failed)", system_id, message, flow)
            status = S(machine.status)
            machine.token_hash = None
            if status in (S.COMMISSIONING, S.DEPLOYING, S.RELEASING, S.TESTING, S.RESCUE_MODE):
                await store.move(session, machine, Action.FAIL, message)
            else:
                # A tidy-up flow after the status already moved on (settle, deployed,
                # exit_rescue): the machine keeps its status; the error stays to be seen.
                machine.flow = machine.flow_step = None
                session.add(machine)

    # -- the steps ----------------------------------------------------------------------

    async def _request(self, command: Any, payload: Any) -> Any:
        return await self.rt.bus.request(command, payload)

    async def _boot_config(self, s: Snapshot) -> Outcome:
        """Boot the flow's ephemeral environment, with a fresh callback token."""
        machine = s.machine
        assert machine.flow is not None
        token = secrets.token_urlsafe(32)
        cmdline = " ".join(
            part
            for part in (
                self.settings.boot_cmdline,
                f"metalbus.url={self.settings.callback_url}",
                f"metalbus.system_id={machine.system_id}",
                f"metalbus.purpose={machine.flow}",
                f"metalbus.token={token}",
            )
            if part
        )
        for mac in s.macs:
            await self._request(
                b.BOOT_CONFIG_SET,
                b.BootConfigSet(
                    mac=mac,
                    purpose=PURPOSE[machine.flow],
                    kernel=self.settings.ephemeral_kernel,
                    initrd=self.settings.ephemeral_initrd,
                    cmdline=cmdline,
                ),
            )
        # Only the token's hash is kept; the plain token lives in the boot config alone.
        return Outcome(
            f"{PURPOSE[machine.flow]} boot for {len(s.macs)} interface(s)",
            {"token_hash": store.hash_token(token)},
        )

    async def _boot_local(self, s: Snapshot) -> Outcome:
        for mac in s.macs:
            await self._request(b.BOOT_CONFIG_SET, b.BootConfigSet(mac=mac, purpose="local"))
        return Outcome("local boot")

    async def _bmc(self, s: Snapshot) -> tuple[int | None, dict[str, Any]]:
        """The machine's BMC id, registering it with power first when that is pending."""
        machine = s.machine
        if machine.bmc_id is not None or not machine.power_pending:
            return machine.bmc_id, {}
        assert machine.power_driver is not None
        bmc = await self._request(
            p.BMC_CREATE,
            p.BmcCreate(
                name=store.bmc_name(machine.hostname, machine.system_id),
                driver=p.DriverName(machine.power_driver),
                settings=json.loads(machine.power_parameters),
                machine_id=machine.system_id,
            ),
        )
        machine.bmc_id = bmc.id
        return bmc.id, {"bmc_id": bmc.id, "power_pending": False}

    async def _sets_boot_device(self, driver: str | None) -> bool:
        """Whether the driver can set the boot device (``manual`` cannot: a person boots
        the machine from the network by hand). Asked once of the power service."""
        if self._boot_device is None:
            drivers = await self._request(p.DRIVER_LIST, Empty())
            self._boot_device = {d.name.value: d.boot_device for d in drivers.drivers}
        return self._boot_device.get(driver or "", False)

    async def _power_on(self, s: Snapshot) -> Outcome:
        bmc_id, columns = await self._bmc(s)
        if bmc_id is None:
            raise Conflict("the machine has no power driver: set its power first")
        pxe = await self._sets_boot_device(s.machine.power_driver)
        boot = p.BootOverride(device=p.BootDevice.PXE) if pxe else None
        result = await self._request(p.POWER_ON, p.PowerOnRequest(id=bmc_id, boot=boot))
        how = "network boot" if pxe else "boot device left to the machine"
        return Outcome(f"powered on ({how}), changed={result.changed}", columns)

    async def _power_off(self, s: Snapshot) -> Outcome:
        if s.machine.vm_id is not None and s.machine.flow == "release":
            return Outcome("composed: decomposing destroys it")
        bmc_id, columns = await self._bmc(s)
        if bmc_id is None:
            return Outcome("no power driver: left as it is", columns)
        result = await self._request(p.POWER_OFF, p.PowerOffRequest(id=bmc_id))
        return Outcome(f"powered off, changed={result.changed}", columns)

    async def _allocate_ips(self, s: Snapshot) -> Outcome:
        machine = s.machine
        # Stable for the whole deploy, so a repeated step gets the same addresses back.
        generation = int(as_utc(machine.status_changed_at).timestamp())
        outcome = Outcome()
        for link, mac in s.links:
            if link.mode not in (LinkMode.AUTO, LinkMode.STATIC) or link.ip_id is not None:
                continue
            assert link.id is not None
            static = link.mode == LinkMode.STATIC
            address = await self._request(
                ip.ADDRESS_ALLOCATE,
                ip.AllocateAddress(
                    subnet_id=link.subnet_id,
                    ip=link.requested_ip if static else None,
                    alloc_type=ip.AddressType.STICKY if static else ip.AddressType.AUTO,
                    owner_type=ip.OwnerType.MACHINE,
                    owner_id=machine.system_id,
                    hostname=machine.hostname,
                    mac=mac,
                    idempotency_key=f"{machine.system_id}-link{link.id}-{generation}",
                ),
            )
            outcome.links[link.id] = (address.ip, address.id)
        outcome.detail = ", ".join(a for a, _ in outcome.links.values()) or "no static addresses"
        return outcome

    async def _release_ips(self, s: Snapshot) -> Outcome:
        """Release AUTO addresses (STATIC ones stay the machine's until the link goes)."""
        outcome = Outcome()
        for link, _ in s.links:
            if link.mode != LinkMode.AUTO or link.ip_id is None:
                continue
            assert link.id is not None
            try:
                await self._request(
                    ip.ADDRESS_RELEASE,
                    ip.ReleaseAddress(
                        id=link.ip_id, idempotency_key=f"release-{s.machine.system_id}-{link.ip_id}"
                    ),
                )
            except NotFound:
                pass  # already gone (released by hand, or its subnet deleted)
            outcome.links[link.id] = (None, None)
        outcome.detail = f"{len(outcome.links)} address(es) released"
        return outcome

    async def _decompose(self, s: Snapshot) -> Outcome:
        if s.machine.vm_id is None:
            return Outcome("not composed")
        try:
            await self._request(c.VM_DECOMPOSE, c.DecomposeRequest(id=s.machine.vm_id))
        except NotFound:
            pass  # decomposed already (a repeated step, or through the pods API)
        if s.machine.bmc_id is not None:
            try:
                await self._request(p.BMC_DELETE, ip.ById(id=s.machine.bmc_id))
            except NotFound:
                pass
        return Outcome(f"VM {s.machine.vm_id} decomposed", delete=True)

    async def _released(self, s: Snapshot) -> Outcome:
        # Releasing -> Ready commits with the end of the flow (see _record).
        return Outcome(
            "released",
            {"owner": None, "install_kvm": False, "token_hash": None},
            move=Action.RELEASED,
        )

    async def _register_kvm_host(self, s: Snapshot) -> Outcome:
        machine = s.machine
        if not machine.install_kvm:
            return Outcome("not a KVM host")
        address = next((link.ip for link, _ in s.links if link.ip), None)
        uri = self.settings.kvm_host_uri.format(
            ip=address or machine.hostname, hostname=machine.hostname
        )
        try:
            host = await self._request(
                c.HOST_CREATE,
                c.KvmHostCreate(
                    uri=uri,
                    name=machine.hostname,
                    host_ip=address,
                    zone=s.zone,
                    pool=s.pool,
                    origin=c.HostOrigin.DEPLOYED,
                ),
            )
        except Conflict as exc:
            return Outcome(f"already a KVM host: {exc.message}")
        return Outcome(f"KVM host {host.id} added ({uri})")
