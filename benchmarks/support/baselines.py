"""The raw clients outboxkit is measured against, sending the very same messages.

Kafka: an aiokafka producer with ``enable_idempotence=True`` and ``acks="all"``, every message
sent with its key and outboxkit headers, then all acknowledgements awaited. NATS: JetStream
publishes with ``Nats-Msg-Id``, at most ``concurrency`` awaiting their PubAck.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio
import nats
from aiokafka import AIOKafkaProducer

from benchmarks.support.progress import Progress
from outboxkit.message import Message, broker_headers

__all__ = ["kafka_headers", "raw_kafka", "raw_nats"]


def kafka_headers(message: Message) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in broker_headers(message)]


async def raw_kafka(
    bootstrap: str,
    topic: str,
    messages: Sequence[Message],
    tracker: Progress,
    *,
    linger_ms: int,
    max_batch_size: int,
) -> None:
    """Send ``messages`` to ``topic`` and wait until the broker acknowledged all of them.

    ``linger_ms`` and ``max_batch_size`` are the publisher's, so both batch alike.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=max_batch_size,
    )
    await producer.start()
    try:
        pending: list[asyncio.Future[object]] = []
        for message in messages:
            future = await producer.send(
                topic,
                message.payload,
                key=message.partition_key.encode(),
                headers=kafka_headers(message),
            )
            future.add_done_callback(lambda _: tracker.add())
            pending.append(future)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def raw_nats(
    url: str, subject: str, messages: Sequence[Message], tracker: Progress, concurrency: int
) -> None:
    """Publish ``messages`` to JetStream, ``concurrency`` PubAcks outstanding at most."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        limiter = anyio.Semaphore(concurrency)

        async def publish(message: Message) -> None:
            try:
                headers = dict(broker_headers(message))
                headers["Nats-Msg-Id"] = str(message.id)
                await js.publish(subject, message.payload, headers=headers)
                tracker.add()
            finally:
                limiter.release()

        async with anyio.create_task_group() as tg:
            for message in messages:
                await limiter.acquire()
                tg.start_soon(publish, message)
    finally:
        await client.close()
