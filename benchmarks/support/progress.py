"""A one-line-per-second progress report on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

__all__ = ["Progress", "progress", "say", "wait_until"]


def say(text: str) -> None:
    """Print one progress line to stderr."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


class Progress:
    """A counter of done items; :func:`progress` prints it every second."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.started = time.perf_counter()

    def add(self, n: int = 1) -> None:
        self.done += n

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        total = f"/{self.total:,}" if self.total is not None else ""
        return f"{self.label}: {self.done:,}{total} in {elapsed:.1f}s ({rate:,.0f}/s)"


@asynccontextmanager
async def progress(label: str, total: int | None = None) -> AsyncIterator[Progress]:
    """A :class:`Progress` reported every second while the block runs, and once at the end."""
    tracker = Progress(label, total)
    async with anyio.create_task_group() as tg:

        async def report() -> None:
            while True:
                await anyio.sleep(1.0)
                say(tracker.line())

        tg.start_soon(report)
        try:
            yield tracker
        finally:
            tg.cancel_scope.cancel()
    say(tracker.line() + " done")


async def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    with anyio.move_on_after(timeout):
        while not condition():  # noqa: ASYNC110 - the condition is plain state, no event
            await anyio.sleep(step)
        return True
    return False
