"""``create_topics``: missing topics are created on first use, against the real broker (which
does not auto-create topics); without it, a missing topic fails with a hint."""

from __future__ import annotations

import anyio
import pytest
from outboxkit_kafka import KafkaSettings
from outboxkit_kafka.topics import TopicCreator

from outboxkit.message import HEADER_ID
from outboxkit.protocols import Delivered, Failed
from outboxkit.testing import make_message
from tests.support.kafka import (
    PublisherFactory,
    consume_records,
    partition_count,
    topics,
    topics_deleted_after,
)

pytestmark = pytest.mark.anyio


async def test_missing_topic_is_created_once_then_published_to(
    kafka_bootstrap: str, open_publisher: PublisherFactory
) -> None:
    publisher = await open_publisher(create_topics=True, topic_partitions=4)
    async with topics_deleted_after(kafka_bootstrap) as (topic,):
        messages = [make_message(f"agg-{a}", n, topic=topic) for n in range(3) for a in range(10)]

        assert await publisher.publish(messages) == [Delivered()] * len(messages)
        messages.append(make_message("agg-0", 9, topic=topic))
        assert await publisher.publish(messages[-1:]) == [Delivered()]

        assert await partition_count(kafka_bootstrap, topic) == 4
        records = await consume_records(kafka_bootstrap, topic, len(messages), 20)
    assert sorted(dict(r.headers)[HEADER_ID] for r in records) == sorted(
        str(m.id).encode() for m in messages
    )
    assert publisher.stats.delivered == len(messages)


async def test_relays_racing_to_create_a_topic_all_publish(
    kafka_bootstrap: str, open_publisher: PublisherFactory
) -> None:
    racers = [await open_publisher(create_topics=True) for _ in range(3)]
    results: list[list[object]] = [[] for _ in racers]
    async with topics_deleted_after(kafka_bootstrap) as (topic,):

        async def publish(index: int) -> None:
            message = make_message(f"racer-{index}", topic=topic)
            results[index] = list(await racers[index].publish([message]))

        async with anyio.create_task_group() as tg:
            for index in range(len(racers)):
                tg.start_soon(publish, index)
        assert results == [[Delivered()]] * len(racers)


async def test_an_existing_topic_is_no_creation_failure(kafka_bootstrap: str) -> None:
    creator = TopicCreator(KafkaSettings(bootstrap_servers=kafka_bootstrap, create_topics=True))
    try:
        async with topics(kafka_bootstrap) as (existing,):
            assert await creator.create([existing]) == {}  # TopicAlreadyExistsError is fine
    finally:
        await creator.close()


async def test_a_topic_the_cluster_cannot_create_fails_non_retriable(
    kafka_bootstrap: str, open_publisher: PublisherFactory
) -> None:
    # One broker cannot hold three replicas.
    publisher = await open_publisher(create_topics=True, topic_replication_factor=3)
    async with topics_deleted_after(kafka_bootstrap) as (topic,):
        (outcome,) = await publisher.publish([make_message("a-1", topic=topic)])
    assert isinstance(outcome, Failed) and not outcome.retriable
    assert f"cannot create Kafka topic {topic!r}" in outcome.error
    assert "InvalidReplicationFactor" in outcome.error


async def test_without_create_topics_a_missing_topic_names_the_flag(
    kafka_bootstrap: str, open_publisher: PublisherFactory
) -> None:
    plain = await open_publisher()
    async with topics_deleted_after(kafka_bootstrap) as (topic,):
        (outcome,) = await plain.publish([make_message("a-1", topic=topic)])
    assert isinstance(outcome, Failed) and not outcome.retriable
    assert topic in outcome.error and "--kafka-create-topics" in outcome.error
