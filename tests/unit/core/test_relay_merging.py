"""Publish calls of shard workers started in one event-loop turn merged into one call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
import pytest

from outboxkit.message import Message
from outboxkit.protocols import Delivered, Failed, Outcome
from outboxkit.relay.merging import MiscountError, PublishMerger
from tests.unit.core.fakes import ReportingPublisher, messages, wait_for

pytestmark = pytest.mark.anyio


@dataclass
class ScriptedPublisher(ReportingPublisher):
    """Reports ``report`` delivered, waits for ``gate``, reports ``late``, then fails each
    message whose id is in ``failing`` (outcome text: the message's id) and delivers the
    others; ``error`` makes it raise instead, ``drop`` return that many outcomes fewer."""

    report: list[int] = field(default_factory=list)
    gate: anyio.Event | None = None
    late: list[int] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    error: Exception | None = None
    drop: int = 0
    calls: list[list[Message]] = field(default_factory=list)
    tasks: list[object] = field(default_factory=list)

    async def publish_reporting(
        self, messages: Sequence[Message], delivered: Callable[[Sequence[int]], None]
    ) -> list[Outcome]:
        self.calls.append(list(messages))
        self.tasks.append(anyio.get_current_task().id)
        if self.report:
            delivered(self.report)
        if self.gate is not None:
            await self.gate.wait()
        if self.late:
            delivered(self.late)
        if self.error is not None:
            raise self.error
        outcomes: list[Outcome] = [
            Failed(str(m.id), retriable=True) if str(m.id) in self.failing else Delivered()
            for m in messages
        ]
        return outcomes[: len(outcomes) - self.drop]


class Caller:
    """A shard worker's publish: its outcomes or error, and the indices reported to it."""

    def __init__(self, merger: PublishMerger, batch: list[Message]) -> None:
        self.merger, self.batch = merger, batch
        self.reports: list[int] = []
        self.outcomes: Sequence[Outcome] | None = None
        self.error: Exception | None = None
        self.task: object = None
        self.scope = anyio.CancelScope()

    async def run(self) -> None:
        self.task = anyio.get_current_task().id
        with self.scope:
            try:
                self.outcomes = await self.merger.publish(self.batch, self.reports.extend)
            except Exception as exc:
                self.error = exc


async def together(merger: PublishMerger, *batches: list[Message]) -> list[Caller]:
    """Publish ``batches`` from tasks started in the same turn."""
    callers = [Caller(merger, batch) for batch in batches]
    async with anyio.create_task_group() as background:
        merger.bind(background)
        async with anyio.create_task_group() as tg:
            for caller in callers:
                tg.start_soon(caller.run)
    return callers


def batches(*sizes: int) -> list[list[Message]]:
    pool = iter(messages(aggregates=sum(sizes), per_aggregate=1))
    return [[next(pool) for _ in range(size)] for size in sizes]


async def test_one_call_with_each_batch_contiguous_and_its_share_returned() -> None:
    a, b, c = batches(2, 1, 3)
    publisher = ScriptedPublisher(report=[1, 2, 5], failing={str(a[0].id), str(c[1].id)})
    merger = PublishMerger(publisher, cap=10)
    ca, cb, cc = await together(merger, a, b, c)
    assert publisher.calls == [a + b + c]
    assert (merger.calls, merger.merged) == (1, 3)
    assert ca.outcomes == [Failed(str(a[0].id), retriable=True), Delivered()]
    assert cb.outcomes == [Delivered()]
    assert cc.outcomes == [Delivered(), Failed(str(c[1].id), retriable=True), Delivered()]
    assert (ca.reports, cb.reports, cc.reports) == ([1], [0], [2])


async def test_a_lone_batch_is_published_by_its_own_task() -> None:
    (a,) = batches(2)
    publisher = ScriptedPublisher(report=[1])
    merger = PublishMerger(publisher, cap=10)
    (ca,) = await together(merger, a)
    assert publisher.calls == [a]
    assert publisher.tasks == [ca.task]
    assert merger.calls == 0
    assert ca.outcomes == [Delivered(), Delivered()]
    assert ca.reports == [1]


async def test_an_unbound_merger_publishes_each_batch_alone() -> None:
    a, b = batches(1, 1)
    publisher = ScriptedPublisher()
    merger = PublishMerger(publisher, cap=10)
    callers = [Caller(merger, a), Caller(merger, b)]
    async with anyio.create_task_group() as tg:
        for caller in callers:
            tg.start_soon(caller.run)
    assert publisher.calls == [a, b]


async def test_the_cap_bounds_the_messages_of_a_call() -> None:
    a, b, c, d = batches(2, 2, 1, 4)
    publisher = ScriptedPublisher()
    merger = PublishMerger(publisher, cap=4)
    callers = await together(merger, a, b, c, d)
    assert sorted(publisher.calls, key=lambda call: call[0].id) == [a + b, c, d]
    assert all(len(c.outcomes or ()) == len(c.batch) for c in callers)


async def test_an_exception_fails_every_batch_of_the_call() -> None:
    a, b = batches(1, 2)
    publisher = ScriptedPublisher(error=RuntimeError("broker gone"))
    callers = await together(PublishMerger(publisher, cap=10), a, b)
    assert len(publisher.calls) == 1
    for caller in callers:
        assert isinstance(caller.error, RuntimeError)
        assert caller.outcomes is None


async def test_a_wrong_number_of_outcomes_fails_every_batch() -> None:
    a, b = batches(1, 2)
    publisher = ScriptedPublisher(drop=1)
    callers = await together(PublishMerger(publisher, cap=10), a, b)
    for caller in callers:
        assert isinstance(caller.error, MiscountError)
        assert "returned 2 outcomes for 3 messages" in str(caller.error)
    (alone,) = await together(PublishMerger(publisher, cap=10), a)
    assert isinstance(alone.error, MiscountError)


async def test_a_cancelled_caller_leaves_the_call_to_the_others() -> None:
    a, b = batches(1, 1)
    gate = anyio.Event()
    publisher = ScriptedPublisher(gate=gate, late=[0, 1])
    merger = PublishMerger(publisher, cap=10)
    ca, cb = Caller(merger, a), Caller(merger, b)
    async with anyio.create_task_group() as background:
        merger.bind(background)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ca.run)
            tg.start_soon(cb.run)
            await wait_for(lambda: bool(publisher.calls))
            ca.scope.cancel()  # the leader: its lease was lost
            await anyio.sleep(0.01)
            gate.set()
    assert publisher.calls == [a + b]
    assert ca.outcomes is None and ca.error is None
    assert cb.outcomes == [Delivered()]
    assert (ca.reports, cb.reports) == ([], [0])


async def test_a_caller_cancelled_before_the_call_hands_the_others_on() -> None:
    a, b, c = batches(1, 2, 1)
    publisher = ScriptedPublisher()
    merger = PublishMerger(publisher, cap=10)
    ca, cb, cc = Caller(merger, a), Caller(merger, b), Caller(merger, c)

    async def lose_lease() -> None:
        ca.scope.cancel()

    async with anyio.create_task_group() as background:
        merger.bind(background)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ca.run)
            tg.start_soon(cb.run)
            tg.start_soon(cc.run)
            tg.start_soon(lose_lease)  # before the leader's turn ends
    assert publisher.calls == [b + c]
    assert ca.outcomes is None and ca.error is None
    assert cb.outcomes == [Delivered(), Delivered()]
    assert cc.outcomes == [Delivered()]
