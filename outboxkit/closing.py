"""Closing things within a time limit, whatever they do with cancellation.

A client library's ``close`` may wait for a server that does not answer, and some shield
themselves from cancellation or swallow it (aiokafka's producer ``stop`` waits for every
queued record to be acknowledged). A relay must still stop in bounded time, so shutdown
steps run through :func:`close_within`: on asyncio the step runs in a task of its own, and
when the time is up that task is cancelled and left behind rather than awaited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["CLOSE_TIMEOUT", "close_within"]

CLOSE_TIMEOUT = 5.0
"""Seconds a plugin's ``close`` may wait for its server before dropping its connections."""


async def close_within(step: Callable[[], Awaitable[object]], timeout: float) -> bool:
    """Run ``step()`` for at most ``timeout`` seconds: True if it ended in time (its
    exception, if any, is raised), False if it was given up.

    Not shielded: cancelling the caller gives up the step at once, too.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): plain cancellation is all there is
        with anyio.move_on_after(timeout):
            await step()
            return True
        return False

    async def run() -> None:
        await step()

    task = loop.create_task(run())
    try:
        with anyio.move_on_after(timeout):
            await asyncio.wait({task})
    finally:
        if not task.done():
            task.cancel()
            task.add_done_callback(_forget)
    if not task.done():
        return False
    task.result()
    return True


def _forget(task: asyncio.Task[None]) -> None:
    """Consume the outcome of a step given up on (no 'exception never retrieved' noise)."""
    if not task.cancelled():
        task.exception()
