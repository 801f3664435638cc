"""The raw clients outboxkit is measured against: the fastest plain use of each client,
sending the very same messages (keys, outboxkit headers, payloads).

A baseline is built so that nothing but the client works while the clock runs:

- the client is started, the topic's metadata loaded and every record prepared (key, value,
  header list, partition; NATS: the header dict with ``Nats-Msg-Id``) *before* the clock
  starts; the clock stops when the broker acknowledged the last message;
- the timed loop calls the client and nothing else: no progress callback, no per-message
  bookkeeping (the progress line shows the count only at the end);
- several ways of using the client are tried in the same run (:data:`KAFKA_VARIANTS`,
  :data:`NATS_VARIANTS`), each into its own fresh destination, and the fastest is the
  baseline.

Kafka keeps the publisher's guarantees (``enable_idempotence=True``, ``acks="all"``) and
varies how records are handed over (``send()`` per record or pre-built per-partition batches
with ``send_batch()``), the batch size and the linger. NATS publishes to JetStream with
``Nats-Msg-Id`` and varies the number of publishes awaiting their PubAck.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nats
from aiokafka import AIOKafkaProducer
from outboxkit_kafka.publisher import CONTENT_TYPE_HEADER as KAFKA_CONTENT_TYPE
from outboxkit_nats.publisher import CONTENT_TYPE_HEADER as NATS_CONTENT_TYPE

from outboxkit.message import Message, broker_headers

__all__ = [
    "KAFKA_VARIANTS",
    "NATS_VARIANTS",
    "KafkaRecord",
    "KafkaVariant",
    "NatsVariant",
    "kafka_headers",
    "kafka_records",
    "raw_kafka",
    "raw_nats",
    "send_batches",
]

KafkaRecord = tuple[int, bytes, bytes, list[tuple[str, bytes]]]
"""(partition, key, value, headers) of one record."""


def kafka_headers(message: Message) -> list[tuple[str, bytes]]:
    """The headers the Kafka publisher sends (so that records are byte for byte alike)."""
    headers = [(k, v.encode()) for k, v in broker_headers(message)]
    headers.append((KAFKA_CONTENT_TYPE, message.content_type.encode()))
    return headers


@dataclass(frozen=True)
class KafkaVariant:
    """One way of using the producer."""

    name: str
    batches: bool
    """``send_batch()`` of pre-built per-partition batches, else ``send()`` per record."""
    max_batch_size: int
    linger_ms: int


KAFKA_VARIANTS = (
    KafkaVariant("send(), linger 0 ms, 256 KiB batches", False, 262_144, 0),
    KafkaVariant("send(), linger 5 ms, 1 MiB batches", False, 1_048_576, 5),
    KafkaVariant("send_batch(), 256 KiB batches", True, 262_144, 0),
    KafkaVariant("send_batch(), 1 MiB batches", True, 1_048_576, 0),
)
"""Tried in every run; the fastest is the baseline (the first is the publisher's settings
used the way ``send()`` is documented)."""


@dataclass(frozen=True)
class NatsVariant:
    name: str
    in_flight: int


NATS_VARIANTS = (
    NatsVariant("publish_async(), 256 in flight", 256),
    NatsVariant("publish_async(), 1,024 in flight", 1_024),
    NatsVariant("publish_async(), 4,000 in flight", 4_000),
)


def kafka_producer(bootstrap: str, variant: KafkaVariant) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=variant.linger_ms,
        max_batch_size=variant.max_batch_size,
    )


def kafka_records(
    producer: AIOKafkaProducer, topic: str, messages: Sequence[Message]
) -> list[KafkaRecord]:
    """The records of ``messages``, with the partition the producer's partitioner picks
    (the topic's metadata must be loaded)."""
    metadata = producer._metadata
    every = list(metadata.partitions_for_topic(topic))
    available = list(metadata.available_partitions_for_topic(topic))
    records = []
    for message in messages:
        key = message.partition_key.encode()
        partition = producer._partitioner(key, every, available)
        records.append((partition, key, message.payload, kafka_headers(message)))
    return records


async def send_batches(
    producer: AIOKafkaProducer, topic: str, records: Sequence[KafkaRecord]
) -> list[asyncio.Future[Any]]:
    """Hand ``records`` to the producer as full per-partition batches (record order kept
    within a partition); return the batches' delivery futures."""
    by_partition: dict[int, list[KafkaRecord]] = {}
    for record in records:
        by_partition.setdefault(record[0], []).append(record)
    futures = []
    for partition, own in by_partition.items():
        builder = producer.create_batch()
        for _, key, value, headers in own:
            if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
                futures.append(await producer.send_batch(builder, topic, partition=partition))
                builder = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None, headers=headers)
        futures.append(await producer.send_batch(builder, topic, partition=partition))
    return futures


async def raw_kafka(
    bootstrap: str, topic: str, messages: Sequence[Message], variant: KafkaVariant
) -> float:
    """Seconds from the first call to the broker's last acknowledgement of ``messages``."""
    producer = kafka_producer(bootstrap, variant)
    await producer.start()
    try:
        await producer.partitions_for(topic)
        records = kafka_records(producer, topic, messages)
        started = time.perf_counter()
        if variant.batches:
            await asyncio.gather(*await send_batches(producer, topic, records))
        else:
            send = producer.send
            futures = [
                await send(topic, value, key=key, headers=headers)
                for _, key, value, headers in records
            ]
            await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def nats_headers(message: Message) -> dict[str, str]:
    """The headers the NATS publisher sends."""
    headers = dict(broker_headers(message))
    headers[NATS_CONTENT_TYPE] = message.content_type
    headers["Nats-Msg-Id"] = str(message.id)
    return headers


async def raw_nats(
    url: str, subject: str, messages: Sequence[Message], variant: NatsVariant
) -> float:
    """Seconds from the first publish to the last PubAck, ``variant.in_flight`` awaiting
    their PubAck at most (``publish_async`` waits for a free slot)."""
    client = await nats.connect(url)
    try:
        js = client.jetstream(publish_async_max_pending=variant.in_flight)
        prepared = [(message.payload, nats_headers(message)) for message in messages]
        await js._init_async_reply()  # the reply inbox publish_async() sets up once
        started = time.perf_counter()
        publish = js.publish_async
        futures = [
            await publish(subject, payload, headers=headers) for payload, headers in prepared
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await client.close()
