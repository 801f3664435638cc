"""Fixtures of the Kafka publisher tests: fresh topics per test on the real broker, publisher
factories, and a consumer reading topics back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from outboxkit_kafka import KafkaPublisher, KafkaSettings

from outboxkit.testing import Consume, ReceivedRecord, open_factory, unique_name
from tests.support.kafka import PublisherFactory, consume_records, received, topics


def make_publisher(**settings: Any) -> KafkaPublisher:
    return KafkaPublisher(KafkaSettings(**settings))


@pytest.fixture
async def open_publisher(kafka_bootstrap: str) -> AsyncIterator[PublisherFactory]:
    """``await open_publisher(**settings)``: an open publisher, closed after the test."""
    async with open_factory(
        make_publisher,
        bootstrap_servers=kafka_bootstrap,
        request_timeout_ms=10000,
        delivery_timeout_ms=15000,
    ) as factory:
        yield factory


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
