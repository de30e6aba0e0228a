"""Long operations followed on the live event stream (compose, commission, deploy...).

:func:`follow` opens the stream first, then runs the operation, and feeds each event to a
callback that prints progress and says when the operation is over. The events trail the
answer (services publish them through their outboxes), so after the answer it keeps
reading until the callback is satisfied or ``wait_s`` has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from metalbus.client import AsyncClient, ClientError
from metalbus.shared.events import RawEvent
from metalbus.shared.tasks import cancel_all

from .output import Session, err

T = TypeVar("T")


async def follow(
    s: Session,
    types: list[str],
    operation: Callable[[AsyncClient], Awaitable[T]],
    on_event: Callable[[RawEvent], bool],
    *,
    status: str,
    wait_s: float,
) -> T:
    """Run ``operation`` while ``on_event`` sees the events of ``types``; it returns True
    when nothing more is expected. A stream that fails leaves the operation's answer to
    speak: the progress is a courtesy."""
    connected = asyncio.Event()
    finished = asyncio.Event()

    async def read(client: AsyncClient) -> None:
        try:
            async for event in client.stream_events(types, connected=connected):
                if on_event(event):
                    finished.set()
        except (ClientError, ValueError):
            pass
        finally:
            connected.set()
            finished.set()  # nothing more will come

    async with s.async_client() as client:
        reader = asyncio.create_task(read(client))
        try:
            await connected.wait()
            with err.status(status):
                answer = await operation(client)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), wait_s)
            return answer
        finally:
            await cancel_all([reader])
