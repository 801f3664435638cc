"""Requests of many shard workers merged into one query when they start together."""

from __future__ import annotations

import asyncio  # futures, and a flush task that runs after the callbacks already ready
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

__all__ = ["TurnMerger"]

A = TypeVar("A")
R = TypeVar("R")


class TurnMerger(Generic[A, R]):
    """Runs the requests made in one event-loop turn as one query.

    A NOTIFY burst wakes several shard workers in the same turn, and one Kafka response
    settles their batches in the same turn; each then calls :meth:`submit`. The first
    request schedules a flush task, which starts after the other workers have queued theirs
    and sends them all at once (``many``; ``one`` when alone). One request per shard goes
    into a flush; a second one for the same shard waits for the next flush. An error fails
    every request of its flush. A waiter that is cancelled does not stop the query: its
    result is dropped (claims only read; an ack is fenced inside the query either way).
    """

    def __init__(
        self,
        one: Callable[[int, A], Awaitable[R]],
        many: Callable[[Sequence[tuple[int, A]]], Awaitable[Mapping[int, R]]],
    ) -> None:
        self._one = one
        self._many = many
        self._queued: list[tuple[int, A, asyncio.Future[R]]] = []
        self._flushing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, shard: int, request: A) -> R:
        """The result of ``request`` for ``shard``, from a query it may share."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queued.append((shard, request, future))
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
        # other workers woken in the same turn queued their requests.
        batch: list[tuple[int, A, asyncio.Future[R]]] = []
        later: list[tuple[int, A, asyncio.Future[R]]] = []
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

    async def _run(self, batch: list[tuple[int, A, asyncio.Future[R]]]) -> None:
        if not batch:
            return
        try:
            if len(batch) == 1:
                shard, request, _ = batch[0]
                results = {shard: await self._one(shard, request)}
            else:
                results = dict(await self._many([(shard, request) for shard, request, _ in batch]))
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
        """Wait for flushes in flight (their waiters get their results or the error)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
