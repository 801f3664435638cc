"""Fixtures of the Kafka publisher tests: fresh topics per test on the real broker, publisher
factories, and a consumer reading topics back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from kafka_support import consume_records, received, topics
from outboxkit_kafka import KafkaPublisher, KafkaSettings

from outboxkit.testing import Consume, ReceivedRecord, unique_name

PublisherFactory = Callable[..., Awaitable[KafkaPublisher]]


@pytest.fixture
async def open_publisher(kafka_bootstrap: str) -> AsyncIterator[PublisherFactory]:
    """``await open_publisher(**settings)``: an open publisher, closed after the test."""
    opened: list[KafkaPublisher] = []

    async def factory(**settings: Any) -> KafkaPublisher:
        settings.setdefault("bootstrap_servers", kafka_bootstrap)
        settings.setdefault("request_timeout_ms", 10000)
        settings.setdefault("delivery_timeout_ms", 15000)
        publisher = KafkaPublisher(KafkaSettings(**settings))
        await publisher.open()
        opened.append(publisher)
        return publisher

    yield factory
    for publisher in opened:
        await publisher.close()


@pytest.fixture
async def publisher(open_publisher: PublisherFactory) -> KafkaPublisher:
    return await open_publisher()


@pytest.fixture
async def destination(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A fresh 3-partition topic, deleted after the test."""
    async with topics(kafka_bootstrap, partitions=3) as (name,):
        yield name


@pytest.fixture
def missing_destination() -> str:
    return unique_name("okt-missing").replace("_", "-")


@pytest.fixture
def consume(kafka_bootstrap: str) -> Consume:
    async def read(topic: str, count: int, timeout: float) -> list[ReceivedRecord]:
        return [received(r) for r in await consume_records(kafka_bootstrap, topic, count, timeout)]

    return read
