"""What is in flight, observed at the broker: at most one un-acknowledged publish per aggregate,
many aggregates at once, never more than ``max_in_flight``.

Over one connection the server sees publishes in the order they were sent, so the stream's
order alone cannot show whether a later message was sent before the earlier one's PubAck.
Here a responder on the real NATS server answers the publishes in JetStream's PubAck format,
after a delay the test controls, and records what was outstanding when each message arrived.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from outboxkit.message import HEADER_AGGREGATE_ID, Message
from outboxkit.protocols import Delivered, Failed

pytestmark = pytest.mark.anyio


@dataclass
class AckingResponder:
    """Answers each publish after ``delay`` s, except those whose id is in ``silent``."""

    nc: Client
    prefix: str
    delay: float = 0.01
    silent: set[str] = field(default_factory=set)
    outstanding: Counter[str] = field(default_factory=Counter)
    received: list[str] = field(default_factory=list)
    max_outstanding: int = 0
    overlaps: list[str] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def on_message(self, msg: Msg) -> None:
        assert msg.headers is not None
        aggregate, msg_id = msg.headers[HEADER_AGGREGATE_ID], msg.headers["Nats-Msg-Id"]
        self.received.append(msg_id)
        if self.outstanding[aggregate]:
            self.overlaps.append(aggregate)
        self.outstanding[aggregate] += 1
        self.max_outstanding = max(self.max_outstanding, sum(self.outstanding.values()))
        if msg_id not in self.silent:
            task = asyncio.create_task(self._ack(msg, aggregate))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _ack(self, msg: Msg, aggregate: str) -> None:
        await asyncio.sleep(self.delay)
        self.outstanding[aggregate] -= 1
        await msg.respond(msgspec.json.encode({"stream": "FAKE", "seq": len(self.received)}))


@pytest.fixture
async def responder(nc: Client) -> AsyncIterator[AckingResponder]:
    prefix = f"obkt-acks.{uuid.uuid4().hex[:12]}"
    made = AckingResponder(nc, prefix)
    sub = await nc.subscribe(f"{prefix}.>", cb=made.on_message)
    yield made
    await sub.unsubscribe()


def batch(aggregates: int, per_aggregate: int) -> list[Message]:
    """Each aggregate's messages next to each other, so sending them at once is tempting."""
    return [
        Message.create(aggregate_type="t", aggregate_id=f"agg-{a}", event_type="e", payload=n)
        for a in range(aggregates)
        for n in range(per_aggregate)
    ]


async def test_one_unacknowledged_publish_per_aggregate_bounded_overall(
    open_publisher, responder: AckingResponder
):
    publisher = await open_publisher(
        subject_template=responder.prefix + ".{aggregate_type}", max_in_flight=16
    )
    messages = batch(aggregates=100, per_aggregate=5)

    outcomes = await publisher.publish(messages)

    assert outcomes == [Delivered()] * len(messages)
    assert responder.overlaps == []
    assert 1 < responder.max_outstanding <= 16
    assert sorted(responder.received) == sorted(str(m.id) for m in messages)


async def test_unanswered_publish_is_retriable_and_holds_back_its_aggregate(
    open_publisher, responder: AckingResponder
):
    publisher = await open_publisher(
        subject_template=responder.prefix + ".{aggregate_type}", publish_timeout=0.5
    )
    messages = batch(aggregates=3, per_aggregate=3)
    lost = messages[1]  # second message of agg-0
    responder.silent.add(str(lost.id))

    outcomes = await publisher.publish(messages)

    agg0 = [o for m, o in zip(messages, outcomes, strict=True) if m.aggregate_id == "agg-0"]
    assert agg0[0] == Delivered()
    assert isinstance(agg0[1], Failed) and agg0[1].retriable and "PubAck" in agg0[1].error
    assert isinstance(agg0[2], Failed) and agg0[2].retriable
    assert agg0[2].error.startswith(f"not sent: earlier message {lost.id}")
    assert str(messages[2].id) not in responder.received  # third of agg-0 never left
    others = [o for m, o in zip(messages, outcomes, strict=True) if m.aggregate_id != "agg-0"]
    assert others == [Delivered()] * 6
