"""Acks as the broker's acknowledgements arrive, with a publisher that reports them mid-call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
import pytest

from outboxkit.message import Message
from outboxkit.protocols import Delivered, Failed, Outcome, ReportsDeliveries
from outboxkit.relay import ShardedRelay
from tests.unit.core.fakes import (
    FakeStore,
    ReportingPublisher,
    messages,
    running,
    settings,
    wait_for,
)

pytestmark = pytest.mark.anyio

Step = tuple[list[int], anyio.Event | None]
"""Indices to report delivered, then an event to wait for (None: go on)."""


@dataclass
class ScriptedPublisher(ReportingPublisher):
    """Its first call reports deliveries step by step and returns ``outcomes``; later calls
    deliver everything at once. ``calls`` holds the messages of each call."""

    steps: list[Step]
    outcomes: list[Outcome]
    calls: list[list[Message]] = field(default_factory=list)
    first_done: anyio.Event = field(default_factory=anyio.Event)

    async def publish_reporting(
        self, messages: Sequence[Message], delivered: Callable[[Sequence[int]], None]
    ) -> list[Outcome]:
        self.calls.append(list(messages))
        if len(self.calls) > 1:
            return [Delivered()] * len(messages)
        assert len(messages) == len(self.outcomes)
        for indices, gate in self.steps:
            delivered(indices)
            if gate is not None:
                await gate.wait()
        self.first_done.set()
        return self.outcomes


def one_shard_store(batch: list[Message]) -> FakeStore:
    store = FakeStore(shard_count=1)
    store.add(*batch)
    return store


async def test_delivered_prefix_is_acked_before_the_call_ends() -> None:
    # a0 b0 a1 b1 a2 b2: a1 fails; b2 arrives before b1; a2 arrives although a1 failed
    batch = messages(aggregates=2, per_aggregate=3)
    a0, b0, a1, b1, a2, b2 = (m.id for m in batch)
    first, second = anyio.Event(), anyio.Event()
    ok = Delivered()
    publisher = ScriptedPublisher(
        steps=[([0, 1], None), ([5], first), ([4], None), ([3], second)],
        outcomes=[ok, ok, Failed("refused", retriable=True), ok, ok, ok],
    )
    assert isinstance(publisher, ReportsDeliveries)
    store = one_shard_store(batch)
    relay = ShardedRelay(store, publisher, settings(batch_size=10))

    async def body() -> None:
        await wait_for(lambda: store.acked == [a0, b0])  # mid-call
        await anyio.sleep(0.05)
        assert store.acked == [a0, b0], "b2 must wait for b1"
        assert store.calls["ack"] == 1
        first.set()
        await wait_for(lambda: set(store.acked) == {a0, b0, b1, b2})  # mid-call
        await anyio.sleep(0.05)
        assert not publisher.first_done.is_set()
        assert a2 not in store.acked, "a message after a failed one is never acked early"
        second.set()
        await wait_for(lambda: not store.rows)

    await running([relay], body)
    assert store.acked.index(a1) < store.acked.index(a2)
    assert [m.id for m in publisher.calls[1]] == [a1, a2], "a1 retried, a2 held back"
    assert store.acked.count(a2) == 1


async def test_a_failed_early_ack_is_made_when_the_call_returns() -> None:
    batch = messages(aggregates=3, per_aggregate=2)
    gate = anyio.Event()
    publisher = ScriptedPublisher(steps=[([0, 1, 2], gate)], outcomes=[Delivered()] * 6)
    store = one_shard_store(batch)
    store.faults["ack"] = 1
    relay = ShardedRelay(store, publisher, settings(batch_size=10))

    async def body() -> None:
        await wait_for(lambda: store.calls["ack"] == 1)
        await anyio.sleep(0.05)
        assert store.calls["ack"] == 1, "no early ack after one failed"
        gate.set()
        await wait_for(lambda: not store.rows)

    await running([relay], body)
    assert sorted(store.acked) == sorted(m.id for m in batch)
    assert len(publisher.calls) == 1, "nothing published twice"
    assert store.calls["ack"] == 2


async def test_without_ack_as_delivered_the_batch_is_acked_when_the_call_returns() -> None:
    batch = messages(aggregates=2, per_aggregate=2)
    gate = anyio.Event()
    publisher = ScriptedPublisher(steps=[([0, 1], gate)], outcomes=[Delivered()] * 4)
    store = one_shard_store(batch)
    relay = ShardedRelay(store, publisher, settings(batch_size=10, ack_as_delivered=False))

    async def body() -> None:
        await wait_for(lambda: len(publisher.calls) == 1)
        await anyio.sleep(0.05)
        assert not store.acked
        gate.set()
        await wait_for(lambda: not store.rows)

    await running([relay], body)
    assert store.calls["ack"] == 1
