"""A Publisher wrapper that records when the broker acknowledged each message."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from outboxkit.message import Message
from outboxkit.protocols import Delivered, Outcome, Publisher

__all__ = ["AckClock"]


class AckClock:
    """Delegates to ``inner``; ``acked[id]`` is the ``clock()`` time (``perf_counter`` unless
    told) at which the publish call that delivered message ``id`` returned (all of a batch are
    acknowledged by then)."""

    def __init__(self, inner: Publisher, clock: Callable[[], float] = time.perf_counter) -> None:
        self.inner = inner
        self.clock = clock
        self.acked: dict[str, float] = {}

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, messages: Sequence[Message]) -> list[Outcome]:
        outcomes = await self.inner.publish(messages)
        now = self.clock()
        for message, outcome in zip(messages, outcomes, strict=False):
            if isinstance(outcome, Delivered):
                self.acked.setdefault(str(message.id), now)
        return outcomes
