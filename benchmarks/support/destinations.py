"""Per-run broker resources: Kafka topics and NATS JetStream streams, removed afterwards.

Kafka topics come from the test suite's helper (``tests.support.kafka.topics``), so the
benchmarks and the tests create and remove them one way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
from nats.js.api import StreamConfig

from tests.support.kafka import topics

__all__ = ["KAFKA_PARTITIONS", "kafka_topic", "nats_stream"]

KAFKA_PARTITIONS = 6


@asynccontextmanager
async def kafka_topic(
    bootstrap: str, name: str, configs: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """Create topic ``name`` (auto-creation is off) of :data:`KAFKA_PARTITIONS` partitions
    with ``configs``, once its partitions have leaders; delete it on exit."""
    async with topics(bootstrap, partitions=KAFKA_PARTITIONS, names=[name], configs=configs):
        yield name


@asynccontextmanager
async def nats_stream(url: str, name: str) -> AsyncIterator[str]:
    """Create stream ``name`` capturing ``<name>.>``; yield the subject prefix; delete it.
    (Not ``tests.support.nats.scratch_stream``: the benchmarks name streams by scenario and
    read the stream back from the subject's first token.)"""
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
