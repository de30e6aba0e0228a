"""cancel_all stops tasks that swallow a cancellation (as 3.11's wait_for can)."""

from __future__ import annotations

import asyncio

from metalbus.shared.tasks import cancel_all


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again() -> None:
    swallowed = asyncio.Event()
    waiting = asyncio.Event()

    async def swallows_one_cancellation() -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # lost, as when wait_for's inner future finished at the same time
        await asyncio.Event().wait()

    async def failing() -> None:
        raise RuntimeError("ended badly")

    tasks = [asyncio.create_task(swallows_one_cancellation()), asyncio.create_task(failing())]
    await waiting.wait()  # the first is inside its try: the first cancel lands there
    await asyncio.wait_for(cancel_all(tasks), timeout=10)
    assert swallowed.is_set()
    assert tasks[0].cancelled()
    assert isinstance(tasks[1].exception(), RuntimeError)


async def test_nothing_to_cancel() -> None:
    await cancel_all([])
