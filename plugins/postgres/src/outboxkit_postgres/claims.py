"""Claims of many shard workers merged into one query when they start together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["ClaimMerger"]

Rows = list[Any]
ClaimOne = Callable[[int, int], Awaitable[Rows]]
ClaimMany = Callable[[Sequence[int], Sequence[int]], Awaitable[Rows]]


class ClaimMerger:
    """Runs the claims requested in one event-loop turn as one query.

    A NOTIFY burst wakes several shard workers in the same turn; each calls :meth:`claim`.
    The first request schedules a flush task, which starts after the other woken workers
    have queued theirs and sends them all at once (``claim_many``; ``claim_one`` when alone).
    Claims only read, so a waiter that is cancelled simply drops its rows (they stay pending
    and are claimed again). One request per shard goes into a flush; a second one for the
    same shard waits for the next flush.
    """

    def __init__(self, claim_one: ClaimOne, claim_many: ClaimMany) -> None:
        self._claim_one = claim_one
        self._claim_many = claim_many
        self._queued: list[tuple[int, int, asyncio.Future[Rows]]] = []
        self._flushing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def claim(self, shard: int, limit: int) -> Rows:
        """The rows of ``shard`` the claim query returns, at most ``limit``."""
        future: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        self._queued.append((shard, limit, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        if self._flushing or not self._queued:
            return
        self._flushing = True
        task = asyncio.get_running_loop().create_task(self._flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        # This task's first step runs after the callbacks already ready, i.e. after the
        # other workers woken in the same turn queued their claims.
        batch: list[tuple[int, int, asyncio.Future[Rows]]] = []
        later: list[tuple[int, int, asyncio.Future[Rows]]] = []
        shards: set[int] = set()
        for item in self._queued:
            if not item[2].done():
                (later if item[0] in shards else batch).append(item)
                shards.add(item[0])
        self._queued, self._flushing = later, False
        try:
            await self._run(batch)
        finally:
            self._schedule()  # the second requests of a shard, if any

    async def _run(self, batch: list[tuple[int, int, asyncio.Future[Rows]]]) -> None:
        if not batch:
            return
        try:
            if len(batch) == 1:
                shard, limit, future = batch[0]
                results = {shard: await self._claim_one(shard, limit)}
            else:
                rows = await self._claim_many([b[0] for b in batch], [b[1] for b in batch])
                results = {shard: [] for shard, _, _ in batch}
                for row in rows:
                    results[row["shard"]].append(row)
        except BaseException as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for shard, _, future in batch:
            if not future.done():
                future.set_result(results[shard])

    async def close(self) -> None:
        """Wait for flushes in flight (their waiters get their rows or the error)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
