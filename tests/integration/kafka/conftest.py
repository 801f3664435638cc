"""Fixtures of the Kafka publisher tests: fresh topics per test on the real broker, publisher
factories, and a consumer reading topics back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from outboxkit_kafka import KafkaPublisher, KafkaSettings

from outboxkit.message import Message
from outboxkit.testing import Consume, ReceivedRecord, Refuse, open_factory, unique_name
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


@pytest.fixture(params=["oversized", "missing topic"])
def refuse(request: pytest.FixtureRequest, missing_destination: str) -> Refuse:
    """A message Kafka refuses for good: 2 MB, over the default max_request_size of 1 MiB,
    or to a topic that does not exist (topic creation is off)."""

    def refuse(message: Message) -> Message:
        if request.param == "oversized":
            return msgspec.structs.replace(message, payload=b"x" * (2 << 20))
        return msgspec.structs.replace(message, topic=missing_destination)

    return refuse


@pytest.fixture
def unreachable_publisher() -> KafkaPublisher:
    return make_publisher(bootstrap_servers="127.0.0.1:1", connect_timeout_ms=5000)


@pytest.fixture
def consume(kafka_bootstrap: str) -> Consume:
    async def read(topic: str, count: int, timeout: float) -> list[ReceivedRecord]:
        return [received(r) for r in await consume_records(kafka_bootstrap, topic, count, timeout)]

    return read
