"""Smoke test: the Kafka broker creates a topic, takes an idempotent write and serves it back."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from tests.support.kafka import consumer_from_start, topics

pytestmark = pytest.mark.anyio


async def test_kafka_topic_produce_consume(kafka_bootstrap: str) -> None:
    async with topics(kafka_bootstrap, prefix="smoke") as (topic,):
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            meta = await producer.send_and_wait(
                topic, b"payload", key=b"aggregate-1", headers=[("message-id", b"m-1")]
            )
        finally:
            await producer.stop()
        assert (meta.topic, meta.partition, meta.offset) == (topic, 0, 0)

        consumer = consumer_from_start(kafka_bootstrap, topic)
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
        assert (record.key, record.value) == (b"aggregate-1", b"payload")
        assert dict(record.headers) == {"message-id": b"m-1"}
