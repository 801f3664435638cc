"""The Kafka publisher.

Each message becomes one record: key = ``message.partition_key`` (the aggregate id unless the
message sets ``key``), so one aggregate stays in one partition; value = the payload; headers =
:func:`outboxkit.message.broker_headers` plus ``content-type``; topic from ``topic_template``.

Throughput: ``publish`` builds the records of a call into record batches itself, per partition
(aiokafka's ``create_batch()`` / ``send_batch()``), choosing each partition with the producer's
own partitioner exactly as ``send()`` would. That saves ``send()``'s per-record coroutine,
metadata wait, size check and delivery future; a call costs about one round trip per batch.

Order: the idempotent producer writes the batches of a partition in order, and the batches of
a call are sent so that nothing after a failed record of an aggregate is sent
(:mod:`outboxkit_kafka.sending`). A record that cannot be sent at all (missing topic, over
``max_request_size``) fails alone before anything is sent; the later messages of its aggregate
in the call are then not sent and are reported ``Failed(retriable=True)``.

Progress: :meth:`KafkaPublisher.publish_reporting` reports the records of each batch as Kafka
acknowledges it (:class:`outboxkit.protocols.ReportsDeliveries`), so the relay deletes them from
the outbox while the call's later batches are still in flight, and a relay killed mid-call
re-sends only the batches acknowledged since its last ack.

Outages: the idempotent producer retries a submitted batch until the broker takes it; a call
that gives up waiting (``delivery_timeout_ms``) reports its records retriable but leaves the
batch queued. When the relay publishes those messages again while it is still queued, the
publisher waits for the queued batch instead of adding second copies, so an outage costs few
duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import UnknownTopicOrPartitionError

from outboxkit import metrics
from outboxkit.closing import CLOSE_TIMEOUT, close_within
from outboxkit.errors import PublisherUnavailableError
from outboxkit.message import Message, broker_headers, route
from outboxkit.protocols import Failed, Outcome
from outboxkit_kafka.batching import Call, Partitions, Record, record_size
from outboxkit_kafka.connection import start_producer
from outboxkit_kafka.errors import classify, over_max_request_size
from outboxkit_kafka.sending import Sender
from outboxkit_kafka.settings import KafkaSettings
from outboxkit_kafka.topics import TopicCheck, TopicCreator

__all__ = ["CONTENT_TYPE_HEADER", "KafkaPublisher", "PublisherStats"]

log = logging.getLogger("outboxkit.kafka")

CONTENT_TYPE_HEADER = "content-type"
"""The Kafka header carrying ``Message.content_type``."""


class PublisherStats(metrics.PublisherStats, kw_only=True):
    """Counters since the publisher was created: the shared ones
    (:class:`outboxkit.metrics.PublisherStats`) and Kafka's own."""

    rejoined: int = 0
    """Messages still queued in the producer from an earlier call: their pending delivery was
    awaited again instead of queueing a second copy."""
    producer_restarts: int = 0
    """Times a producer that had stopped working (or had a batch fail) was replaced."""


def _record_headers(message: Message) -> list[tuple[str, bytes]]:
    """:func:`~outboxkit.message.broker_headers` then ``content-type``, values encoded."""
    headers = [(k, v.encode()) for k, v in broker_headers(message)]
    headers.append((CONTENT_TYPE_HEADER, message.content_type.encode()))
    return headers


def _stopped(producer: AIOKafkaProducer) -> bool:
    """Whether the producer's sender task ended (e.g. after a fatal sequence error)."""
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    return task is not None and task.done()


class KafkaPublisher:
    """Publishes outbox messages to Kafka with an idempotent aiokafka producer (module docs)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        """The publisher's settings."""
        self.stats = PublisherStats()
        """Cumulative outcome counters."""
        self._producer: AIOKafkaProducer | None = None
        self._topics: TopicCheck | None = None
        self._creator = TopicCreator(settings) if settings.create_topics else None
        self._restart = anyio.Lock()
        self._sender = Sender(settings.max_batch_size, self._current, self._classify)

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        """Start the producer; PublisherUnavailableError if the cluster cannot be reached
        within ``connect_timeout_ms`` (the message names the bootstrap servers)."""
        if self._producer is not None:
            return
        self._producer = await start_producer(self.settings)
        self._topics = TopicCheck(self._producer.client, self._creator)

    async def close(self) -> None:
        """Stop the producer, which sends the records still queued, and the topic admin
        client, within :data:`~outboxkit.closing.CLOSE_TIMEOUT` seconds: past that they are
        left behind (the relay publishes their messages again). Idempotent."""
        producer, self._producer, self._topics = self._producer, None, None
        self._sender.reset()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                if self._creator is not None:
                    tg.start_soon(self._creator.close)
                if producer is not None:
                    tg.start_soon(self._stop, producer)

    async def _stop(self, producer: AIOKafkaProducer) -> None:
        try:
            stopped = await close_within(producer.stop, CLOSE_TIMEOUT)
        except Exception as exc:
            log.warning("stopping the Kafka producer failed: %s", exc)
            return
        if not stopped:
            log.warning(
                "the Kafka producer did not stop within %gs (no answer from %s): gave up",
                CLOSE_TIMEOUT,
                self.settings.bootstrap_servers,
            )

    async def ping(self) -> None:
        """Fetch the cluster's metadata: the relay's readiness check (it bounds the wait)."""
        producer = self._producer
        if producer is None:
            raise PublisherUnavailableError("the Kafka publisher is not open")
        await producer.client.fetch_all_metadata()

    def _broken(self) -> str | None:
        """Why the producer must be replaced, if it must."""
        producer = self._producer
        if producer is None:
            return None
        if _stopped(producer):
            return "the Kafka producer stopped working"
        if producer is self._sender.spoiled:
            return "a failed batch put the Kafka producer's sequence numbers out of step"
        return None

    async def _ready(self) -> tuple[AIOKafkaProducer, TopicCheck]:
        """The running producer, replaced first if it must be (waiting for a replacement
        under way)."""
        if self._restart.locked() or self._broken() is not None:
            async with self._restart:
                reason = self._broken()
                if reason is not None:
                    log.warning("%s; starting a new one", reason)
                    await self.close()
                    self.stats.producer_restarts += 1
                    await self.open()
        if self._producer is None or self._topics is None:
            raise PublisherUnavailableError("the Kafka publisher is not open: call open() first")
        return self._producer, self._topics

    async def _current(self) -> AIOKafkaProducer:
        producer, _ = await self._ready()
        return producer

    # -- publishing -----------------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> list[Outcome]:
        """Publish ``messages``; one outcome each, in order (see the module docs)."""
        return await self.publish_reporting(messages, None)

    async def publish_reporting(
        self,
        messages: Sequence[Message],
        delivered: Callable[[Sequence[int]], None] | None,
    ) -> list[Outcome]:
        """:meth:`publish`, telling ``delivered`` the indices of the messages of each batch
        as Kafka acknowledges it (:class:`outboxkit.protocols.ReportsDeliveries`)."""
        if not messages:
            return []
        try:
            producer, topic_check = await self._ready()
        except PublisherUnavailableError as exc:
            return self.stats.count(
                [Failed(f"Kafka unavailable: {exc}", retriable=True)] * len(messages)
            )
        topics = [route(m, self.settings.topic_template) for m in messages]
        call = Call(messages, topics, self.stats, self.settings.delivery_timeout_ms, delivered)
        deadline = anyio.current_time() + self.settings.delivery_timeout_ms / 1000
        unusable = await topic_check.unusable(topics)
        # One deadline for the whole call (a cancel scope per record or batch costs CPU):
        # what it cuts off is reported by ``Call.expire``.
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as scope:
            partitions = await self._plan(call, producer, unusable)
            if len(partitions) == 1:
                await self._sender.send_partition(call, next(iter(partitions.values())))
            else:
                async with anyio.create_task_group() as tg:
                    for records in partitions.values():
                        tg.start_soon(self._sender.send_partition, call, records)
        if scope.cancelled_caught:
            call.expire()
            self._sender.remember(call)
        return self.stats.count(call.outcomes)

    async def _plan(
        self,
        call: Call,
        producer: AIOKafkaProducer,
        unusable: dict[str, Failed],
    ) -> dict[tuple[str, int], list[Record]]:
        """The records of the call per (topic, partition), in call order; a message that
        cannot be sent fails now and holds back the later messages of its aggregate."""
        partitions = Partitions(producer)
        failures = dict(unusable)
        for topic in dict.fromkeys(call.topics):
            if topic not in failures:
                try:
                    await partitions.load(topic)
                except Exception as exc:
                    failures[topic] = await self._classify(exc, topic)
        planned: dict[tuple[str, int], list[Record]] = {}
        for index in range(len(call.messages)):
            if call.held_back(index):
                continue
            topic = call.topics[index]
            failure = failures.get(topic)
            if failure is not None:
                call.fail(index, failure)
                continue
            record = self._record(call, index, topic, partitions)
            if record is not None:
                planned.setdefault((topic, record.partition), []).append(record)
        return planned

    def _record(self, call: Call, index: int, topic: str, partitions: Partitions) -> Record | None:
        """Message ``index`` as a record; None (outcome set) if it is over
        ``max_request_size``."""
        message = call.messages[index]
        key = message.partition_key.encode()
        headers = _record_headers(message)
        size = record_size(key, message.payload, headers)
        if size > self.settings.max_request_size:
            call.fail(index, over_max_request_size(size, topic))
            return None
        record = Record(index, message, topic, partitions.of(topic, key), key, tuple(headers), size)
        waiting = self._sender.queued  # rarely any: skip hashing the id
        queued = waiting.get((message.id, topic)) if waiting else None
        if queued is not None and not queued.done():
            self.stats.rejoined += 1
            record.queued = queued
            call.pending.append((queued, [record]))
        return record

    async def _classify(self, exc: BaseException, topic: str) -> Failed:
        """The failure of a record to ``topic`` that could not be sent or delivered."""
        if isinstance(exc, UnknownTopicOrPartitionError) and self._topics is not None:
            return await self._topics.confirm(topic, exc)
        return classify(exc, topic)
