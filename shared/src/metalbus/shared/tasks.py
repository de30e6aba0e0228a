"""Stopping tasks for sure.

On Python 3.11 a cancellation can be lost: ``asyncio.wait_for`` returns (or raises
``TimeoutError``) instead of ``CancelledError`` when its inner future finishes in the same
loop iteration as the cancel (bpo-42130, fixed in 3.12). nats-py's ``fetch`` runs on
``wait_for``, so a consumer loop that treats a fetch timeout as "try again" can swallow its
own cancellation and run forever. Stopping code therefore cancels again until every task ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECANCEL_INTERVAL_S = 0.5


async def cancel_all(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until all have ended, cancelling again any that swallowed it."""
    every = list(tasks)
    pending = {task for task in every if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_INTERVAL_S)
    for task in every:  # retrieve outcomes: no "exception was never retrieved" warnings
        if not task.cancelled():
            task.exception()
