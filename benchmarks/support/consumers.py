"""Independent consumers that read what reached the broker and tally it.

Each delivery is matched by its ``outboxkit-id`` header; ``on_first`` gets the receive time
(``time.perf_counter``) of each first delivery, for commit -> receive latency, and
``broker_times`` the Kafka record timestamp (seconds; the broker's append time on a topic
with ``message.timestamp.type=LogAppendTime``), for commit -> broker ack.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import nats
from aiokafka import AIOKafkaConsumer, TopicPartition
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from benchmarks.support.correctness import Tally
from benchmarks.support.destinations import KAFKA_PARTITIONS
from benchmarks.support.workload import SEQ_HEADER
from outboxkit.message import HEADER_AGGREGATE_ID, HEADER_ID

__all__ = ["Consume", "consume_kafka", "consume_nats"]

OnFirst = Callable[[str, float], None]


class Consume:
    """When a consumer stops: ``done()`` says so, or nothing arrived for ``idle`` seconds."""

    def __init__(
        self,
        tally: Tally,
        *,
        done: Callable[[], bool] | None = None,
        idle: float = 20.0,
        on_first: OnFirst | None = None,
    ) -> None:
        self.tally = tally
        self.done = done or tally.complete
        self.idle = idle
        self.on_first = on_first
        self.broker_times: dict[str, float] = {}
        self._last = time.monotonic()

    def deliver(self, headers: Mapping[str, str], broker_ms: int | None = None) -> None:
        now = time.perf_counter()
        self._last = time.monotonic()
        message_id = headers.get(HEADER_ID, "")
        first = self.tally.record(
            message_id, headers.get(HEADER_AGGREGATE_ID, ""), int(headers.get(SEQ_HEADER, "0"))
        )
        if first:
            if self.on_first is not None:
                self.on_first(message_id, now)
            if broker_ms is not None:
                self.broker_times[message_id] = broker_ms / 1000

    def finished(self) -> bool:
        return self.done() or time.monotonic() - self._last > self.idle


async def consume_kafka(bootstrap: str, topic: str, consume: Consume) -> None:
    """Read every partition of ``topic`` from the start until ``consume`` is finished."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(KAFKA_PARTITIONS)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        while not consume.finished():
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            for records in batches.values():
                for record in records:
                    headers = {k: v.decode() for k, v in record.headers}
                    consume.deliver(headers, record.timestamp)
    finally:
        await consumer.stop()


async def consume_nats(url: str, stream: str, consume: Consume) -> None:
    """Read ``stream`` from its first message until ``consume`` is finished."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, max_waiting=1
        )
        sub = await js.pull_subscribe(f"{stream}.>", stream=stream, config=config)
        while not consume.finished():
            try:
                messages = await sub.fetch(batch=1000, timeout=0.2)
            except TimeoutError:
                continue
            for message in messages:
                consume.deliver(message.headers or {})
        await sub.unsubscribe()
    finally:
        await client.close()
