"""Publish calls of many shard workers merged into one publisher call when they start together.

A NOTIFY burst (or one store response) wakes several shard workers in the same event-loop
turn, each with a batch of a message or two; one publisher call per batch costs about as much
CPU as the messages themselves. :class:`PublishMerger` sends the batches submitted in one turn
as one call: the first submitter of a *group* yields once (the workers already woken submit
theirs meanwhile), then sends the group. Each batch stays contiguous and in order inside the
call, so per-aggregate order holds (an aggregate lives on one shard, a shard submits one batch
at a time); outcomes and delivery reports are split back by offset. A group holds at most
``cap`` messages (a batch larger than ``cap`` goes alone), so bulk draining keeps its calls.

A lone batch is published by its own worker, as before merging. A group of several is
published by a task of ``bind``'s task group, so a worker that is cancelled (its lease lost)
stops waiting without cancelling the others' call: its outcomes and reports are dropped. An
exception of the call, or a wrong number of outcomes, fails every batch of the call.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import cast

import anyio
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint

from outboxkit.message import Message
from outboxkit.protocols import Outcome, Publisher, ReportsDeliveries

__all__ = ["MiscountError", "PublishMerger"]

Reports = Callable[[Sequence[int]], None]


class MiscountError(Exception):
    """The publisher returned a wrong number of outcomes."""


_CANCELLED = RuntimeError("the publisher call was cancelled (relay stopping)")


class _Batch:
    """One worker's submission and, once the call ends, its outcomes or error."""

    __slots__ = ("delivered", "done", "error", "finished", "messages", "outcomes", "waiting")

    def __init__(self, messages: Sequence[Message], delivered: Reports | None) -> None:
        self.messages = messages
        self.delivered = delivered
        self.outcomes: Sequence[Outcome] = ()
        self.error: BaseException | None = None
        self.finished = False
        self.done: anyio.Event | None = None
        """Created by its waiter only (a lone batch needs none)."""
        self.waiting = True
        """False once its worker stopped waiting (cancelled): reports are dropped."""


class _Group:
    __slots__ = ("batches", "size")

    def __init__(self, batch: _Batch) -> None:
        self.batches = [batch]
        self.size = len(batch.messages)


class PublishMerger:
    """Publishes the batches submitted in one event-loop turn as one call (module docs)."""

    def __init__(self, publisher: Publisher, cap: int) -> None:
        self._publisher = publisher
        self._cap = cap
        self._reporting = isinstance(publisher, ReportsDeliveries)
        self._open: _Group | None = None
        """The group that later submissions of this turn join."""
        self._task_group: TaskGroup | None = None
        self.calls = 0
        """Publisher calls made for groups of several batches."""
        self.merged = 0
        """Batches published in those calls."""

    def bind(self, task_group: TaskGroup) -> None:
        """Publish merged calls in ``task_group``; until bound, every batch goes alone."""
        self._task_group = task_group

    async def publish(
        self, messages: Sequence[Message], delivered: Reports | None = None
    ) -> Sequence[Outcome]:
        """The outcomes of ``messages`` (reporting their deliveries to ``delivered``, if
        given and the publisher reports them), from a call that other batches may share.
        Raises what the call raised, or :class:`MiscountError`."""
        size = len(messages)
        group = self._open
        if group is not None and group.size + size <= self._cap:
            batch = _Batch(messages, delivered)
            group.batches.append(batch)
            group.size += size
            return await self._wait(batch)
        if self._task_group is None or size >= self._cap:
            return await self._call(messages, delivered, size)
        batch = _Batch(messages, delivered)
        group = self._open = _Group(batch)
        try:
            await checkpoint()  # the workers woken with this one submit theirs meanwhile
        except BaseException:  # cancelled: the others are published without this batch
            self._close(group)
            if len(group.batches) > 1:
                self._task_group.start_soon(self._run, group.batches[1:])
            raise
        self._close(group)
        if len(group.batches) == 1:
            return await self._call(messages, delivered, size)
        self._task_group.start_soon(self._run, group.batches)
        return await self._wait(batch)

    def _close(self, group: _Group) -> None:
        """Let no more batches join ``group``."""
        if self._open is group:
            self._open = None

    async def _call(
        self, messages: Sequence[Message], delivered: Reports | None, size: int
    ) -> list[Outcome]:
        if delivered is None or not self._reporting:
            outcomes = await self._publisher.publish(messages)
        else:
            reporting = cast(ReportsDeliveries, self._publisher)
            outcomes = await reporting.publish_reporting(messages, delivered)
        if len(outcomes) != size:
            raise MiscountError(f"publisher returned {len(outcomes)} outcomes for {size} messages")
        return outcomes

    @staticmethod
    async def _wait(batch: _Batch) -> Sequence[Outcome]:
        try:
            if not batch.finished:
                batch.done = anyio.Event()
                await batch.done.wait()
        finally:
            batch.waiting = False
        if batch.error is not None:
            raise batch.error
        return batch.outcomes

    async def _run(self, batches: list[_Batch]) -> None:
        """Publish ``batches`` as one call and hand each its share."""
        messages: list[Message] = []
        offsets: list[int] = []
        for batch in batches:
            offsets.append(len(messages))
            messages.extend(batch.messages)
        reports = any(b.delivered is not None for b in batches)

        def delivered(indices: Sequence[int]) -> None:
            shares: dict[int, list[int]] = {}
            for index in indices:
                owner = bisect_right(offsets, index) - 1
                shares.setdefault(owner, []).append(index - offsets[owner])
            for owner, share in shares.items():
                batch = batches[owner]
                if batch.waiting and batch.delivered is not None:
                    batch.delivered(share)

        self.calls += 1
        self.merged += len(batches)
        try:
            outcomes = await self._call(messages, delivered if reports else None, len(messages))
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else _CANCELLED
            for batch in batches:
                batch.error = failure
                self._finish(batch)
            if failure is _CANCELLED:
                raise
            return
        for batch, start in zip(batches, offsets, strict=True):
            batch.outcomes = outcomes[start : start + len(batch.messages)]
            self._finish(batch)

    @staticmethod
    def _finish(batch: _Batch) -> None:
        batch.finished = True
        if batch.done is not None:
            batch.done.set()
