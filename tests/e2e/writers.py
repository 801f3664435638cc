"""What the end-to-end writers share: a total of messages split among concurrent writers,
and the message they write."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import anyio

from outboxkit.message import Message

__all__ = ["order_changed", "run_writers"]


def order_changed(aggregate_id: str, topic: str, **payload: object) -> Message:
    """An ``order.changed`` message of order ``aggregate_id``."""
    return Message.create(
        aggregate_type="order",
        aggregate_id=aggregate_id,
        event_type="order.changed",
        payload=payload,
        topic=topic,
    )


async def run_writers(
    total: int,
    writers: int,
    per_write: tuple[int, int],
    write: Callable[[int, random.Random, int], Awaitable[None]],
    seed: int,
) -> None:
    """``writers`` concurrent tasks share ``total`` messages: each calls
    ``write(writer_index, rng, count)`` with ``per_write`` (min, max) messages at a time
    (fewer at the end) until none are left. Writer ``n`` draws from
    ``random.Random(seed * 1000 + n)``."""
    remaining = [total]

    async def writer(index: int, rng: random.Random) -> None:
        while remaining[0] > 0:
            count = min(rng.randint(*per_write), remaining[0])
            remaining[0] -= count
            await write(index, rng, count)

    async with anyio.create_task_group() as tg:
        for n in range(writers):
            tg.start_soon(writer, n, random.Random(seed * 1000 + n))
