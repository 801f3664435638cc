"""The Kafka publisher.

Each message becomes one record: key = ``message.partition_key`` (the aggregate id unless the
message sets ``key``), so one aggregate stays in one partition; value = the payload; headers =
:func:`outboxkit.message.broker_headers` plus ``content-type``; topic from ``topic_template``.

Throughput: ``publish`` hands every record to the producer first (``send()`` only queues it
in a partition batch) and then waits for all delivery acknowledgements together, so a call
costs about one round trip per partition batch, not one per message.

Order: the producer is idempotent with ``acks=all``; aiokafka then keeps one request in flight
per partition and retries it with the same sequence numbers, so the records of one aggregate
are written in the order they were sent. If a record cannot even be queued (missing topic,
oversized record, full buffer), the later messages of its aggregate in the call are not sent
and are reported ``Failed(retriable=True)``. A record that fails *after* later ones of its
aggregate were already queued (e.g. no acknowledgement within ``delivery_timeout_ms``) cannot
hold them back any more: they are reported as they turn out. That is safe for the relay, which
re-publishes everything of an aggregate from its first failed message, so first deliveries
stay in order and the rest are duplicates (dropped by consumers by ``outboxkit-id``).

Outages: the idempotent producer retries a queued record until the broker takes it; a call
that gives up waiting (``delivery_timeout_ms``) reports it retriable but leaves it queued. When
the relay publishes that message again while it is still queued, the publisher waits for the
queued record instead of adding a second copy, so an outage costs few duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from uuid import UUID

import anyio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import UnknownTopicOrPartitionError

from outboxkit import metrics
from outboxkit.errors import PublisherUnavailableError
from outboxkit.message import Message, broker_headers, route
from outboxkit.protocols import Delivered, Failed, Outcome
from outboxkit_kafka.connection import start_producer
from outboxkit_kafka.errors import classify, not_acknowledged, not_sent
from outboxkit_kafka.settings import KafkaSettings
from outboxkit_kafka.topics import TopicCheck, TopicCreator

__all__ = ["CONTENT_TYPE_HEADER", "KafkaPublisher", "PublisherStats"]

log = logging.getLogger("outboxkit.kafka")

CONTENT_TYPE_HEADER = "content-type"


class PublisherStats(metrics.PublisherStats, kw_only=True):
    """Counters since the publisher was created: the shared ones
    (:class:`outboxkit.metrics.PublisherStats`) and Kafka's own."""

    rejoined: int = 0
    """Messages still queued in the producer from an earlier call: their pending delivery was
    awaited again instead of queueing a second copy."""
    producer_restarts: int = 0
    """Times a producer that had stopped working was replaced."""


def _record_headers(message: Message) -> list[tuple[str, bytes]]:
    headers = [(k, v.encode()) for k, v in broker_headers(message)]
    headers.append((CONTENT_TYPE_HEADER, message.content_type.encode()))
    return headers


def _retrieve(future: asyncio.Future[object]) -> None:
    """Mark a delivery future's exception as seen (its outcome was reported otherwise)."""
    if not future.cancelled():
        future.exception()


def _stopped(producer: AIOKafkaProducer) -> bool:
    """Whether the producer's sender task ended (e.g. after a fatal sequence error)."""
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    return task is not None and task.done()


class KafkaPublisher:
    """Publishes outbox messages to Kafka with an idempotent aiokafka producer (module docs)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.stats = PublisherStats()
        self._producer: AIOKafkaProducer | None = None
        self._topics: TopicCheck | None = None
        self._creator = TopicCreator(settings) if settings.create_topics else None
        self._restart = anyio.Lock()
        self._queued: dict[tuple[UUID, str], asyncio.Future[object]] = {}

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        """Start the producer; PublisherUnavailableError if the cluster cannot be reached
        within ``connect_timeout_ms`` (the message names the bootstrap servers)."""
        if self._producer is not None:
            return
        self._producer = await start_producer(self.settings)
        self._topics = TopicCheck(self._producer.client, self._creator)

    async def close(self) -> None:
        """Flush queued records and stop the producer. Idempotent."""
        producer, self._producer, self._topics = self._producer, None, None
        self._queued = {}
        if self._creator is not None:
            await self._creator.close()
        if producer is None:
            return
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.settings.delivery_timeout_ms / 1000):
                try:
                    await producer.flush()
                except Exception as exc:
                    log.warning("Kafka flush on close failed: %s", exc)
            await producer.stop()

    async def _ready(self) -> tuple[AIOKafkaProducer, TopicCheck]:
        """The running producer, replaced first if its sender stopped for good."""
        if self._producer is None or self._topics is None:
            raise PublisherUnavailableError("the Kafka publisher is not open: call open() first")
        if _stopped(self._producer):
            async with self._restart:
                if self._producer is not None and _stopped(self._producer):
                    log.warning("the Kafka producer stopped working; starting a new one")
                    await self.close()
                    self.stats.producer_restarts += 1
                    await self.open()
        assert self._producer is not None and self._topics is not None
        return self._producer, self._topics

    # -- publishing -----------------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> list[Outcome]:
        """Publish ``messages``; one outcome each, in order (see the module docs)."""
        if not messages:
            return []
        try:
            producer, topic_check = await self._ready()
        except PublisherUnavailableError as exc:
            return self.stats.count(
                [Failed(f"Kafka unavailable: {exc}", retriable=True)] * len(messages)
            )
        topics = [route(m, self.settings.topic_template) for m in messages]
        outcomes: list[Outcome | None] = [None] * len(messages)
        futures: dict[int, asyncio.Future[object]] = {}
        deadline = anyio.current_time() + self.settings.delivery_timeout_ms / 1000
        unusable = await topic_check.unusable(topics)
        failed: dict[str, UUID] = {}
        # One deadline for queueing the whole call (a cancel scope per record cost about a
        # fifth of the relay's CPU): when it expires, the record being queued and all later
        # ones without an outcome are reported as not acknowledged (their aggregates failed).
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as scope:
            for index, message in enumerate(messages):
                earlier = failed.get(message.aggregate_id)
                if earlier is not None:
                    self.stats.not_sent += 1
                    outcomes[index] = not_sent(message.aggregate_id, earlier)
                    continue
                topic = topics[index]
                failure = unusable.get(topic)
                if failure is None:
                    try:
                        futures[index] = await self._queue(producer, topic, message)
                        continue
                    except Exception as exc:
                        failure = await self._send_failure(topic_check, exc, topic)
                outcomes[index] = failure
                failed[message.aggregate_id] = message.id
        if scope.cancelled_caught:
            self._expire(messages, topics, futures, outcomes, failed)
        await self._collect(futures, topics, outcomes, deadline)
        return self.stats.count(outcomes)

    def _expire(
        self,
        messages: Sequence[Message],
        topics: list[str],
        futures: dict[int, asyncio.Future[object]],
        outcomes: list[Outcome | None],
        failed: dict[str, UUID],
    ) -> None:
        """Outcomes of the messages left unqueued when the queueing deadline expired."""
        for index, message in enumerate(messages):
            if index in futures or outcomes[index] is not None:
                continue
            earlier = failed.get(message.aggregate_id)
            if earlier is not None:
                self.stats.not_sent += 1
                outcomes[index] = not_sent(message.aggregate_id, earlier)
            else:
                timeout_ms = self.settings.delivery_timeout_ms
                outcomes[index] = not_acknowledged(topics[index], timeout_ms)
                failed[message.aggregate_id] = message.id

    async def _queue(
        self, producer: AIOKafkaProducer, topic: str, message: Message
    ) -> asyncio.Future[object]:
        """The delivery future of ``message``: the one of a record still queued by an earlier
        call (e.g. one that gave up waiting during an outage), else that of a new record."""
        key = (message.id, topic)
        queued = self._queued.get(key)
        if queued is not None and not queued.done():
            self.stats.rejoined += 1
            return queued
        future: asyncio.Future[object] = await producer.send(
            topic,
            message.payload,
            key=message.partition_key.encode(),
            headers=_record_headers(message),
        )
        self._queued[key] = future

        def forget(done: asyncio.Future[object]) -> None:
            if self._queued.get(key) is done:
                del self._queued[key]

        future.add_done_callback(forget)
        return future

    async def _send_failure(self, topic_check: TopicCheck, exc: Exception, topic: str) -> Failed:
        if isinstance(exc, UnknownTopicOrPartitionError):
            return await topic_check.confirm(topic, exc)
        return classify(exc, topic)

    async def _collect(
        self,
        futures: dict[int, asyncio.Future[object]],
        topics: list[str],
        outcomes: list[Outcome | None],
        deadline: float,
    ) -> None:
        """Fill ``outcomes`` from the delivery futures, waiting until ``deadline`` at most."""
        if not futures:
            return
        # The records of a partition batch are acknowledged together, so waiting for one
        # future at a time needs a wake-up per batch, not a callback per record as one
        # ``asyncio.wait`` over all of them would (waiting does not cancel a future).
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
            for future in futures.values():
                if not future.done():
                    await asyncio.wait((future,))
        for index, future in futures.items():
            if not future.done():
                future.add_done_callback(_retrieve)
                outcomes[index] = not_acknowledged(topics[index], self.settings.delivery_timeout_ms)
            elif future.cancelled():
                outcomes[index] = Failed(f"delivery to {topics[index]!r} was cancelled", True)
            elif (exc := future.exception()) is not None:
                outcomes[index] = classify(exc, topics[index])
            else:
                outcomes[index] = Delivered()
