"""Sending the records of a publish call, one partition's batches after the other.

Order: the producer is idempotent with ``acks=all``. Batches given to ``send_batch()`` get
their producer id and sequence numbers when the sender drains them, exactly like the batches
``send()`` fills (``MessageAccumulator._pop_batch``, checked in aiokafka 0.14), and aiokafka
keeps at most one request in flight per partition (per broker, in fact) and retries it with the
same sequence numbers, so batches are written in the order they were submitted, without
duplicates from its own retries.

The records of one aggregate share a partition (same key) and are appended in call order. The
batches of a partition are submitted one at a time, each once the previous one was
acknowledged, so when a batch fails nothing after it in its partition has been sent: each of
its records fails with the batch's error, and the later records of the partition are not sent
(retriable) — the relay publishes all of them again, from the first failed message of each
aggregate. (Records of one aggregate sent to other topics, or with other keys, are in
partitions Kafka does not order against each other; a failure holds back only what was not
submitted yet.)

Small calls: a call with at most :data:`SHARED_BATCH_RECORDS` records for a partition appends
them with ``send()`` to the partition's open batch, shared with other calls. The producer
drains one batch per partition per request, and keeps one request in flight per broker, so
under a steady trickle (many calls of one or two records) a batch of its own per call would
queue behind the others; a shared batch leaves with the next request. Order still holds:
``send()`` appends in call order, and with the idempotent producer a failed batch fails every
later batch of its partition (out-of-order sequence), so a later record cannot be written
after an earlier one failed; records appended after a ``send()`` that raised are not sent.
A shared batch refused as too large fails its records retriably and sends the topic's later
records through batches of their own (below), so only a record too large alone dead-letters.

A batch the broker refuses as too large (a topic's ``max.message.bytes`` below the batch) is
sent again one record per batch, so only a record too large on its own is dead-lettered; later
batches to that topic hold at most half the refused size. A failed batch leaves the producer's
sequence number of its partition ahead of the broker's (the broker never wrote it) and aiokafka
cannot rewind it, so every later batch there would fail with OutOfOrderSequenceNumber: the
producer is marked :attr:`Sender.spoiled` and replaced before the next batch.
"""

from __future__ import annotations

import asyncio  # aiokafka's send() returns asyncio futures
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from uuid import UUID

import anyio
from aiokafka.errors import MessageSizeTooLargeError

from outboxkit.errors import PublisherUnavailableError
from outboxkit.protocols import Failed
from outboxkit_kafka.batching import Call, Record, take_batch
from outboxkit_kafka.errors import partition_failed

__all__ = ["MIN_BATCH_BYTES", "Sender"]

log = logging.getLogger("outboxkit.kafka")

MIN_BATCH_BYTES = 16384
"""Smallest batch limit learned from a topic refusing batches as too large."""

SHARED_BATCH_RECORDS = 4
"""Up to this many records of a call for one partition go through ``send()`` (Small calls)."""

Producer = Any  # aiokafka.AIOKafkaProducer (untyped)
Delivery = asyncio.Future[object]


async def _outcome(delivery: Delivery, topic: str) -> BaseException | None:
    """Wait for ``delivery`` (never cancelling it); its error, None if acknowledged."""
    await asyncio.wait((delivery,))
    if delivery.cancelled():
        return asyncio.CancelledError(f"delivery to {topic!r} cancelled")
    return delivery.exception()


class Sent(NamedTuple):
    """One batch's share of a call's records."""

    members: list[Record]
    end: int
    """Position in the partition's records after the last one looked at."""
    batch: Any
    """The aiokafka BatchBuilder."""
    delivery: Delivery | None = None
    error: BaseException | None = None


class Sender:
    """Sends records partition by partition (module docs) with the producer ``ready()``
    returns; ``failure(exc, topic)`` classifies an error."""

    def __init__(
        self,
        max_batch_size: int,
        ready: Callable[[], Awaitable[Producer]],
        failure: Callable[[BaseException, str], Awaitable[Failed]],
    ) -> None:
        self._max_batch_size = max_batch_size
        self._ready = ready
        self._failure = failure
        self.queued: dict[tuple[UUID, str], Delivery] = {}
        """(message id, topic) -> delivery of a batch a call gave up waiting for."""
        self.spoiled: Producer | None = None
        """A producer one of whose batches failed (module docs)."""
        self._slots: dict[tuple[str, int], anyio.Lock] = {}
        self._batch_limits: dict[str, int] = {}

    def reset(self) -> None:
        """Forget the queued records and the spoiled producer (it was replaced)."""
        self.queued, self.spoiled = {}, None

    async def send_partition(self, call: Call, records: list[Record]) -> None:
        """Send the records of one partition, batch after batch (module docs)."""
        await call.rejoin(records)
        try:
            if len(records) <= SHARED_BATCH_RECORDS and records[0].topic not in self._batch_limits:
                await self._send_shared(call, records)
            else:
                await self._send_batches(call, records)
        except PublisherUnavailableError as exc:
            call.fail_all(records, Failed(f"Kafka unavailable: {exc}", True))

    async def _send_batches(self, call: Call, records: list[Record]) -> None:
        """Send the records in batches of their own, each once the previous one was
        acknowledged (module docs)."""
        topic, partition = records[0].topic, records[0].partition
        position, one_by_one_until = 0, 0
        while position < len(records):
            limit = 0 if position < one_by_one_until else self._batch_limits.get(topic)
            sent = await self._send_next(call, records, position, limit)
            too_large = isinstance(sent.error, MessageSizeTooLargeError)
            if sent.error is None:
                call.deliver(sent.members)
            elif too_large and sent.batch.record_count() > 1:
                self._shrink_batches(topic, sent.batch.size())
                one_by_one_until = sent.end
                continue  # the same records again, one per batch
            else:
                call.fail_all(sent.members, await self._failure(sent.error, topic))
                if not too_large:
                    call.fail_all(records[sent.end :], partition_failed(topic, partition))
                    return
            position = sent.end

    async def _send_shared(self, call: Call, records: list[Record]) -> None:
        """Send a few records with ``send()``, into the partition's open batch (module docs:
        Small calls), and wait for their acknowledgements."""
        producer = await self._ready()
        topic, partition = records[0].topic, records[0].partition
        sent: list[tuple[Delivery, Record]] = []
        for position, record in enumerate(records):
            if call.settled(record.index):
                continue
            try:
                delivery: Delivery = await producer.send(
                    topic,
                    record.message.payload,
                    key=record.key,
                    partition=partition,
                    headers=list(record.headers),
                )
            except Exception as exc:
                call.fail_all([record], await self._failure(exc, topic))
                call.fail_all(records[position + 1 :], partition_failed(topic, partition))
                break
            self._track(producer, delivery)
            call.pending.append((delivery, [record]))
            sent.append((delivery, record))
        for delivery, record in sent:
            error = await _outcome(delivery, topic)
            if error is None:
                call.deliver([record])
            elif isinstance(error, MessageSizeTooLargeError):
                # the shared batch was refused, maybe for other calls' records: retry; from
                # now on this topic's records go in batches of their own, one by one if refused
                if topic not in self._batch_limits:
                    self._batch_limits[topic] = self._max_batch_size
                    log.warning("Kafka refused a shared batch to %r as too large", topic)
                call.fail_all([record], partition_failed(topic, partition))
            else:
                call.fail_all([record], await self._failure(error, topic))

    async def _send_next(
        self, call: Call, records: list[Record], position: int, limit: int | None
    ) -> Sent:
        """Send the next records of ``records`` from ``position`` in one batch and wait for
        its acknowledgement."""
        producer = await self._ready()
        topic, partition = records[0].topic, records[0].partition
        slot = self._slots.get((topic, partition))
        if slot is None:
            slot = self._slots[(topic, partition)] = anyio.Lock(fast_acquire=True)
        # aiokafka's add_batch waits for the partition's previous batch to be drained, with a
        # timeout it shortens by all the time waited so far at every wake-up: many calls
        # waiting there for one partition would time out early, so they queue here instead.
        async with slot:
            sent = await self._queue(producer, call, records, position, limit)
        delivery = sent.delivery
        if delivery is None:
            return sent
        call.pending.append((delivery, sent.members))
        return sent._replace(error=await _outcome(delivery, topic))

    async def _queue(
        self,
        producer: Producer,
        call: Call,
        records: list[Record],
        position: int,
        limit: int | None,
    ) -> Sent:
        """Queue a batch of the next records in the producer (the error if it cannot)."""
        topic, partition = records[0].topic, records[0].partition
        builder = producer.create_batch()
        members, end = take_batch(builder, records, position, limit, call)
        sent = Sent(members, end, builder)
        if not members:
            return sent
        builder.close()  # complete: sent without lingering, nothing else may join it
        try:
            delivery: Delivery = await producer.send_batch(builder, topic, partition=partition)
        except Exception as exc:
            return sent._replace(error=exc)
        self._track(producer, delivery)
        return sent._replace(delivery=delivery)

    def _track(self, producer: Producer, delivery: Delivery) -> None:
        """A failed batch spoils its producer (module docs)."""

        def done(future: Delivery) -> None:
            if not future.cancelled() and future.exception() is not None:
                self.spoiled = producer

        delivery.add_done_callback(done)

    def remember(self, call: Call) -> None:
        """Remember the records of ``call`` whose batch is still queued after the call gave
        up on it, until it completes (publisher module docs: Outages)."""
        queued = self.queued
        for delivery, records in call.pending:
            if delivery.done():
                continue
            keys = [(record.message.id, record.topic) for record in records]
            for key in keys:
                queued[key] = delivery

            def forget(future: Delivery, keys: list[tuple[UUID, str]] = keys) -> None:
                for key in keys:
                    if queued.get(key) is future:
                        del queued[key]

            delivery.add_done_callback(forget)

    def _shrink_batches(self, topic: str, refused: int) -> None:
        limit = max(MIN_BATCH_BYTES, refused // 2)
        if limit < self._batch_limits.get(topic, self._max_batch_size):
            self._batch_limits[topic] = limit
            log.warning(
                "Kafka refused a batch of about %d bytes to %r as too large (is the topic's "
                "max.message.bytes below max_batch_size?): batches to it now hold %d at most",
                refused,
                topic,
                limit,
            )
