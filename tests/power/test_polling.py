"""Polling sweeps against pyghmi BMC servers: state changes, a BMC that dies mid-life, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from metalbus.shared.contract import power as p
from tests.helpers import async_wait_for
from tests.power.conftest import BmcFarm, PowerUnderTest, run_farm

Query = Callable[[], Awaitable[p.PowerState]]


def wrap_queries(
    power: PowerUnderTest, around: Callable[[int, Query], Awaitable[p.PowerState]]
) -> None:
    """Make every BMC query of ``power`` go through ``around(bmc id, the real query)``."""
    store = power.service.store
    real_driver_for = type(store).driver_for

    def driver_for(self, row):  # type: ignore[no-untyped-def]
        driver = real_driver_for(self, row)
        real_query = driver.query

        async def query() -> p.PowerState:
            return await around(row.id, real_query)

        driver.query = query
        return driver

    store.driver_for = driver_for.__get__(store)  # type: ignore[method-assign]


async def test_sweeps_report_changes_failures_and_recovery(
    power: PowerUnderTest, bmc_farm: BmcFarm
) -> None:
    ids = []
    for i, port in enumerate(bmc_farm.ports):
        bmc = await power.call(
            p.BMC_CREATE,
            {
                "name": f"node{i}",
                "driver": "ipmi",
                "settings": bmc_farm.settings(port),
                "machine_id": f"m{i}",
            },
        )
        ids.append(bmc.id)
    await power.call(p.BMC_CREATE, {"name": "by-hand", "driver": "manual"})  # never polled
    poller = power.service.poller

    first = await poller.sweep()
    assert (first.bmcs, first.queried, first.ok, first.changed) == (5, 4, 4, 4)
    states = {b.id: b.power_state for b in (await power.call(p.BMC_LIST, {})).items}
    assert [states[i] for i in ids] == ["on", "off", "on", "off"]
    for bmc_id in ids:
        await power.wait_event("state.changed", bmc_id)

    # Nothing moved: nothing is written, nothing is published.
    quiet = await poller.sweep()
    assert (quiet.ok, quiet.changed, quiet.failed) == (4, 0, 0)

    # Someone presses the button on node1: exactly that change is reported.
    assert bmc_farm.command(f"set {bmc_farm.ports[1]} on") == "ok"
    moved = await poller.sweep()
    assert moved.changed == 1
    change = (await power.wait_event("state.changed", ids[1], count=2))[-1]
    assert change.data == {
        "bmc_id": ids[1],
        "machine_id": "m1",
        "previous": "off",
        "state": "on",
        "cause": "poll",
        "action": None,
    }

    # node2's BMC stops answering mid-life: two failed sweeps make it unreachable...
    assert bmc_farm.command(f"mute {bmc_farm.ports[2]}") == "ok"
    for _ in range(2):
        failing = await poller.sweep()
        assert (failing.ok, failing.failed, failing.changed) == (3, 1, 0)
    gone = await power.wait_event("bmc.unreachable", ids[2])
    assert gone[0].data["failures"] == 2 and gone[0].data["machine_id"] == "m2"
    node2 = await power.call(p.BMC_GET, {"id": ids[2]})
    assert not node2.reachable and node2.last_error and node2.power_state is p.PowerState.ON
    # ...and the breaker spares the next sweep from waiting on it.
    spared = await poller.sweep()
    assert (spared.skipped, spared.failed) == (1, 0)

    assert bmc_farm.command(f"unmute {bmc_farm.ports[2]}") == "ok"

    async def recovered() -> bool:
        await poller.sweep()
        return bool(power.of_type("bmc.recovered", ids[2]))

    await async_wait_for(recovered, 20, "node2 to be probed again and recover")
    node2 = await power.call(p.BMC_GET, {"id": ids[2]})
    assert node2.reachable and node2.last_error is None
    assert power.of_type("state.changed", ids[2])[-1].data["state"] == "on"  # no false change
    assert len(power.of_type("state.changed")) == 5
    counted = power.rt.metrics.registry.get_sample_value
    assert counted("metalbus_power_poll_queries_total", {"outcome": "failed"}) >= 2
    assert counted("metalbus_power_poll_queries_total", {"outcome": "skipped"}) >= 1
    assert counted("metalbus_power_poll_state_changes_total") == 5
    assert counted("metalbus_power_sweep_seconds_count") >= 6


async def test_per_host_limit_holds_queries_to_one_host(
    power: PowerUnderTest, bmc_farm: BmcFarm
) -> None:
    """Every farm BMC is on 127.0.0.1: with poll_per_host=1 they are queried one at a time."""
    for i, port in enumerate(bmc_farm.ports):
        await power.call(
            p.BMC_CREATE,
            {"name": f"n{i}", "driver": "ipmi", "settings": bmc_farm.settings(port)},
        )
    poller = power.service.poller
    poller.settings = poller.settings.model_copy(update={"poll_per_host": 1})
    in_flight = 0
    peak = 0

    async def counting(bmc_id: int, query: Query) -> p.PowerState:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await query()
        finally:
            in_flight -= 1

    wrap_queries(power, counting)
    report = await poller.sweep()
    assert report.ok == 4 and peak == 1
    poller.settings = poller.settings.model_copy(update={"poll_per_host": 4})
    await poller.sweep()
    assert peak > 1


async def test_a_bmc_that_stops_answering_mid_sweep(
    power: PowerUnderTest, bmc_farm: BmcFarm
) -> None:
    """One BMC goes silent while a sweep is under way (its session warm): that sweep still
    records the others, reports the failure, and changes no state; the next failure makes
    it unreachable, and its return is a recovery with no false change."""
    ids = []
    for i, port in enumerate(bmc_farm.ports):
        bmc = await power.call(
            p.BMC_CREATE, {"name": f"n{i}", "driver": "ipmi", "settings": bmc_farm.settings(port)}
        )
        ids.append(bmc.id)
    poller = power.service.poller
    assert (await poller.sweep()).ok == 4
    for bmc_id in ids:
        await power.wait_event("state.changed", bmc_id)
    # One query at a time, in id order: node2 is muted once node0 has answered.
    poller.settings = poller.settings.model_copy(update={"poll_per_host": 1})
    victim = bmc_farm.ports[2]

    muted = False

    async def mute_after_first(bmc_id: int, query: Query) -> p.PowerState:
        nonlocal muted
        state = await query()
        if bmc_id == ids[0] and not muted:
            assert bmc_farm.command(f"mute {victim}") == "ok"
            muted = True
        return state

    wrap_queries(power, mute_after_first)
    mid = await poller.sweep()
    assert (mid.ok, mid.failed, mid.changed, mid.unreachable) == (3, 1, 0, 0), mid.errors
    assert mid.errors[0].startswith(f"BMC {ids[2]}: ")
    node2 = await power.call(p.BMC_GET, {"id": ids[2]})
    assert node2.reachable and node2.last_error and node2.power_state is p.PowerState.ON

    after = await poller.sweep()
    assert (after.ok, after.failed, after.unreachable) == (3, 1, 1)
    await power.wait_event("bmc.unreachable", ids[2])
    assert bmc_farm.command(f"unmute {victim}") == "ok"

    async def recovered() -> bool:
        await poller.sweep()
        return bool(power.of_type("bmc.recovered", ids[2]))

    await async_wait_for(recovered, 20, "node2 to recover")
    assert power.of_type("bmc.recovered", ids[2])[0].data["power_state"] == "on"
    assert len(power.of_type("state.changed")) == 4  # the first sweep's, nothing since


async def test_hundreds_of_bmcs_sharing_client_sockets_at_full_concurrency(
    power: PowerUnderTest,
) -> None:
    """The shape that hung the 1000-BMC benchmark, at a size a test can afford: 300 BMCs,
    each on its own address, in two farm processes, swept 64 at a time. pyghmi puts up to
    64 BMCs on one client socket and processes their packets from whichever thread waits,
    so many logins at once are what exposed its races (see metalbus.power.drivers
    .pyghmi_fixes) and the farm's (see bmc_farm.py). Every query must come back: the
    deadline is far above what a loaded machine needs and only there to fail, not hang."""
    with run_farm(150, spread=21) as one, run_farm(150, spread=22) as two:
        bmcs = [(farm, port) for farm in (one, two) for port in farm.ports]
        for start in range(0, len(bmcs), 50):
            await asyncio.gather(
                *(
                    power.call(
                        p.BMC_CREATE,
                        {"name": f"b{i}", "driver": "ipmi", "settings": farm.settings(port)},
                    )
                    for i, (farm, port) in enumerate(bmcs[start : start + 50], start)
                )
            )
        poller = power.service.poller
        poller.settings = poller.settings.model_copy(
            update={"poll_concurrency": 64, "query_timeout_s": 20.0}
        )
        first = await asyncio.wait_for(poller.sweep(), 180)
        assert (first.ok, first.failed, first.changed) == (300, 0, 300), first.errors
        warm = await asyncio.wait_for(poller.sweep(), 180)
        assert (warm.ok, warm.failed, warm.changed) == (300, 0, 0), warm.errors
