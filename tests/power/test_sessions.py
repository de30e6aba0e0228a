"""pyghmi sessions over many sweeps of the same BMCs: one session each, no socket or session
growth (also through a BMC that dies and comes back), and idle sessions logged out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from metalbus.shared.contract import power as p
from tests.conftest import DatabaseFactory
from tests.helpers import NatsServer, async_wait_for
from tests.power.conftest import BmcFarm, PowerUnderTest, power_settings, start_power


def _pyghmi() -> Any:
    from pyghmi.ipmi.private import session

    return session


def live_sessions(farm: BmcFarm, exclude: set[Any]) -> set[Any]:
    """The kept-alive, unbroken pyghmi sessions to this farm's BMCs (``exclude``: older ones
    of earlier tests in this process, whose BMC may have had the same port)."""
    return {
        s
        for s in _pyghmi().Session.keepalive_sessions
        if s.port in farm.ports and not s.broken and s not in exclude
    }


def udp_sockets() -> int:
    """UDP sockets this process holds (the database and the bus are TCP: not counted)."""
    inodes = set()
    for table in ("udp", "udp6"):
        for line in Path(f"/proc/self/net/{table}").read_text().splitlines()[1:]:
            inodes.add(line.split()[9])
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed while listing
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


def socket_counts_sane() -> bool:
    """pyghmi's per-socket session counts (see pyghmi_fixes: a logout counted twice)."""
    return all(count >= 0 for count in _pyghmi().Session.socketpool.values())


async def add_bmcs(power: PowerUnderTest, farm: BmcFarm) -> list[int]:
    ids = []
    for i, port in enumerate(farm.ports):
        bmc = await power.call(
            p.BMC_CREATE,
            {"name": f"s{i}", "driver": "ipmi", "settings": farm.settings(port)},
        )
        ids.append(bmc.id)
    return ids


async def test_repeated_sweeps_hold_one_session_per_bmc_and_no_more_sockets(
    power: PowerUnderTest, bmc_farm: BmcFarm
) -> None:
    older = set(_pyghmi().Session.keepalive_sessions)
    ids = await add_bmcs(power, bmc_farm)
    poller = power.service.poller
    for _ in range(3):  # warm up: log in once to each BMC
        assert (await poller.sweep()).ok == 4
    sessions = live_sessions(bmc_farm, older)
    sockets = udp_sockets()
    assert len(sessions) == 4

    for _ in range(30):
        report = await poller.sweep()
        assert (report.ok, report.failed) == (4, 0), report.errors
    assert live_sessions(bmc_farm, older) == sessions  # the same four: no new login
    assert udp_sockets() <= sockets
    assert socket_counts_sane()

    # One BMC stops answering (its session breaks) and comes back (a new login): still one
    # session per BMC, no socket more.
    muted = bmc_farm.ports[0]
    assert bmc_farm.command(f"mute {muted}") == "ok"

    async def unreachable() -> bool:
        await poller.sweep()
        return bool(power.of_type("bmc.unreachable", ids[0]))

    await async_wait_for(unreachable, 30, "the muted BMC to be found unreachable")
    assert bmc_farm.command(f"unmute {muted}") == "ok"

    async def recovered() -> bool:
        await poller.sweep()
        return bool(power.of_type("bmc.recovered", ids[0]))

    await async_wait_for(recovered, 30, "the BMC to recover")
    for _ in range(10):
        assert (await poller.sweep()).ok == 4
    assert len(live_sessions(bmc_farm, older)) == 4
    assert udp_sockets() <= sockets
    assert socket_counts_sane()


async def test_sessions_nobody_uses_are_logged_out(
    nats_server: NatsServer, db_factory: DatabaseFactory, bmc_farm: BmcFarm
) -> None:
    """A BMC deleted (or given new settings) must not keep its session alive forever."""
    older = set(_pyghmi().Session.keepalive_sessions)
    power = await start_power(power_settings(nats_server.url, db_factory(), session_idle_s=2.0))
    try:
        ids = await add_bmcs(power, bmc_farm)
        for bmc_id in ids:
            await power.call(p.POWER_QUERY, {"id": bmc_id})
        assert live_sessions(bmc_farm, older)  # kept between calls (for up to 2 s unused)
        await power.call(p.BMC_DELETE, {"id": ids[0]})

        await async_wait_for(
            lambda: not live_sessions(bmc_farm, older), 20, "the idle sessions to be logged out"
        )
        assert socket_counts_sane()
        released = power.rt.metrics.registry.get_sample_value(
            "metalbus_power_sessions_released_total"
        )
        assert released is not None and released >= 4
        # The BMCs still in use log in again on their next call.
        result = await power.call(p.POWER_QUERY, {"id": ids[1]})
        assert result.power_state is p.PowerState.OFF
        assert len(live_sessions(bmc_farm, older)) == 1
    finally:
        await power.rt.stop()
