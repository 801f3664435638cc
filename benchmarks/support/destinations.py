"""Per-run broker resources: Kafka topics and NATS JetStream streams, removed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import nats
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from nats.js.api import StreamConfig

__all__ = ["KAFKA_PARTITIONS", "kafka_topic", "nats_stream"]

KAFKA_PARTITIONS = 6


async def _leaders_elected(admin: AIOKafkaAdminClient, name: str) -> None:
    """Wait until every partition of ``name`` has a leader: a producer started earlier
    gets NotLeaderForPartition and retries, which a timed run must not count."""
    with anyio.move_on_after(10):
        while True:
            (topic,) = await admin.describe_topics([name])
            partitions = topic.get("partitions") or []
            ready = [p for p in partitions if p.get("leader", -1) >= 0 and p.get("error_code") == 0]
            if topic.get("error_code") == 0 and len(ready) == KAFKA_PARTITIONS:
                return
            await anyio.sleep(0.05)


@asynccontextmanager
async def kafka_topic(
    bootstrap: str, name: str, configs: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """Create topic ``name`` (auto-creation is off) with ``configs``, wait until its
    partitions have leaders, and delete it on exit."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=KAFKA_PARTITIONS,
                    replication_factor=1,
                    topic_configs=configs or {},
                )
            ]
        )
        await _leaders_elected(admin, name)
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
