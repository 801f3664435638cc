"""Smoke test: the Kafka broker creates a topic, takes an idempotent write and serves it back."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from server_clients import consumer_from_start

pytestmark = pytest.mark.anyio


async def test_kafka_topic_produce_consume(kafka_bootstrap: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=1)])
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
    finally:
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
