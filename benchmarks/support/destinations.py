"""Per-run broker resources: Kafka topics and NATS JetStream streams, removed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from nats.js.api import StreamConfig

__all__ = ["KAFKA_PARTITIONS", "kafka_topic", "nats_stream"]

KAFKA_PARTITIONS = 6


@asynccontextmanager
async def kafka_topic(bootstrap: str, name: str) -> AsyncIterator[str]:
    """Create topic ``name`` (auto-creation is off) and delete it on exit."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, num_partitions=KAFKA_PARTITIONS, replication_factor=1)]
        )
        yield name
    finally:
        try:
            await admin.delete_topics([name])
        finally:
            await admin.close()


@asynccontextmanager
async def nats_stream(url: str, name: str) -> AsyncIterator[str]:
    """Create stream ``name`` capturing ``<name>.>``; yield the subject prefix; delete it."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"]))
        try:
            yield name
        finally:
            await js.delete_stream(name)
    finally:
        await client.close()
