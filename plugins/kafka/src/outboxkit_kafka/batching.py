"""The records of one publish call, grouped per partition into aiokafka record batches.

Every record goes to the partition the producer's own partitioner picks for its key (murmur2,
like the Java client), exactly as ``AIOKafkaProducer.send()`` would. :class:`Call` keeps the
outcome of each message and the aggregates that failed so far.
"""

from __future__ import annotations

import asyncio  # aiokafka's send() returns asyncio futures
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from outboxkit.message import Message
from outboxkit.metrics import PublisherStats
from outboxkit.protocols import Delivered, Failed, Outcome, not_sent
from outboxkit_kafka.errors import not_acknowledged

__all__ = ["DELIVERED", "Call", "Headers", "Partitions", "Record", "record_size", "take_batch"]

DELIVERED = Delivered()


Headers = tuple[tuple[str, bytes], ...]
"""A record's headers, values encoded."""


class Record(msgspec.Struct, gc=False):
    """One message as a Kafka record of a known partition.

    Not tracked by the cyclic garbage collector (nothing it holds refers back to it); its
    headers are a tuple, which the collector stops tracking (aiokafka takes a list: a copy is
    made at append).
    """

    index: int
    """Position of the message in the publish call."""
    message: Message
    topic: str
    partition: int
    key: bytes
    headers: Headers
    size: int
    """Upper bound of its size in a batch."""
    queued: asyncio.Future[object] | None = None
    """Delivery of this record still queued by an earlier call: awaited, not queued again."""


record_size: Callable[[bytes, bytes, list[tuple[str, bytes]]], int] = (
    DefaultRecordBatchBuilder.estimate_size_in_bytes
)
"""aiokafka's upper bound of a record's size, the one ``send()`` checks against
``max_request_size`` (its own function: no Python call around it per record)."""


class Partitions:
    """The partition of each key, chosen by the producer's own partitioner exactly as
    ``AIOKafkaProducer.send()`` chooses it (same partition lists, same call)."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._lists: dict[str, tuple[list[int], list[int]]] = {}
        self._chosen: dict[str, dict[bytes, int]] = {}
        """Per loaded topic: the partition of each key seen."""

    async def load(self, topic: str) -> None:
        """Get the producer's metadata of ``topic`` if it has none (raising as ``send()``
        does: UnknownTopicOrPartitionError after ``request_timeout_ms``)."""
        if topic in self._lists:
            return
        await self._producer.partitions_for(topic)
        metadata = self._producer._metadata
        self._lists[topic] = (
            list(metadata.partitions_for_topic(topic)),
            list(metadata.available_partitions_for_topic(topic)),
        )
        self._chosen[topic] = {}

    def of(self, topic: str, key: bytes) -> int:
        """The partition of ``key`` in ``topic`` (loaded first)."""
        chosen = self._chosen[topic]
        partition = chosen.get(key)
        if partition is None:
            every, available = self._lists[topic]
            partition = chosen[key] = self._producer._partitioner(key, every, available)
        return partition


class Call:
    """The outcomes of one publish call, filled in as its records are settled."""

    def __init__(
        self,
        messages: Sequence[Message],
        topics: list[str],
        stats: PublisherStats,
        timeout_ms: int,
        report: Callable[[Sequence[int]], None] | None = None,
    ) -> None:
        self.messages = messages
        self.topics = topics
        self.outcomes: list[Outcome | None] = [None] * len(messages)
        self.failed: dict[str, int] = {}
        """Aggregate id -> index of its first failed message (the lowest failed so far)."""
        self.pending: list[tuple[asyncio.Future[object], list[Record]]] = []
        """Deliveries awaited (rejoined records, submitted batches), for :meth:`expire`."""
        self._stats = stats
        self._timeout_ms = timeout_ms
        self._report = report
        """Told the indices of messages as the broker acknowledges them."""

    def held_back(self, index: int) -> bool:
        """Whether message ``index`` is held back (outcome set) because an earlier message
        of its aggregate failed (a later one never holds it back)."""
        if not self.failed:  # nothing failed (most calls): no lookup per record
            return False
        earlier = self.failed.get(self.messages[index].aggregate_id)
        if earlier is None or earlier >= index:
            return False
        self._stats.not_sent += 1
        self.outcomes[index] = not_sent(self.messages[earlier])
        return True

    def settled(self, index: int) -> bool:
        """Whether message ``index`` has an outcome already or is held back now."""
        return self.outcomes[index] is not None or self.held_back(index)

    def fail(self, index: int, failure: Failed) -> None:
        self.outcomes[index] = failure
        aggregate = self.messages[index].aggregate_id
        if index < self.failed.get(aggregate, index + 1):
            self.failed[aggregate] = index

    def fail_all(self, records: Sequence[Record], failure: Failed) -> None:
        """``failure`` for each of ``records`` without an outcome that is not held back."""
        for record in records:
            if self.outcomes[record.index] is None and not self.held_back(record.index):
                self.fail(record.index, failure)

    def deliver(self, records: Sequence[Record]) -> None:
        for record in records:
            self.outcomes[record.index] = DELIVERED
        if self._report is not None:
            self._report([record.index for record in records])

    async def rejoin(self, records: Sequence[Record]) -> None:
        """Wait for the deliveries of ``records`` still queued by earlier calls: a delivered
        record is done, a failed one is sent again like the others."""
        for record in records:
            queued = record.queued
            if queued is None:
                continue
            if not queued.done():
                await asyncio.wait((queued,))
            if not queued.cancelled() and queued.exception() is None:
                self.deliver([record])
            record.queued = None

    def expire(self) -> None:
        """Outcomes of the records the deadline cut off: delivered if their batch was
        acknowledged, else not acknowledged (retriable: a batch that failed just then is
        classified by the next call); records never submitted are not acknowledged either, or
        not sent if an earlier message of their aggregate failed."""
        for future, records in self.pending:
            ok = future.done() and not future.cancelled() and future.exception() is None
            for record in records:
                if self.outcomes[record.index] is None:
                    if ok:
                        self.outcomes[record.index] = DELIVERED
                    else:
                        self.fail(record.index, not_acknowledged(record.topic, self._timeout_ms))
        for index, outcome in enumerate(self.outcomes):
            if outcome is None and not self.held_back(index):
                self.fail(index, not_acknowledged(self.topics[index], self._timeout_ms))


def take_batch(
    builder: Any, records: list[Record], start: int, limit: int | None, call: Call
) -> tuple[list[Record], int]:
    """Append ``records[start:]`` to ``builder`` in order until it is full or would exceed
    ``limit`` bytes (0: one record per batch); records settled already or held back are
    skipped. Returns the records appended and the position after the last one looked at."""
    members: list[Record] = []
    append = builder.append
    position, end = start, len(records)
    while position < end:
        record = records[position]
        if call.settled(record.index):
            position += 1
            continue
        if limit is not None and members and builder.size() + record.size > limit:
            break
        value, headers = record.message.payload, record.headers
        if append(key=record.key, value=value, timestamp=None, headers=list(headers)) is None:
            break  # full (the first record always fits)
        members.append(record)
        position += 1
    return members, position
