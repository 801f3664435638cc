"""The publisher's own record batches against the real broker: the partition of each key is
the one ``send()`` picks, order holds over many batches per partition, and a batch the
broker refuses as too large dead-letters only the record that is too large by itself."""

from __future__ import annotations

import logging

import msgspec
import pytest
from outboxkit_kafka import KafkaSettings
from outboxkit_kafka.batching import Partitions
from outboxkit_kafka.connection import start_producer

from outboxkit.message import HEADER_AGGREGATE_ID, HEADER_ID, Message
from outboxkit.protocols import Delivered, Failed, ReportsDeliveries
from outboxkit.testing import ids_by_aggregate, make_message, order_by_aggregate
from tests.support.kafka import PublisherFactory, consume_records, topics

pytestmark = pytest.mark.anyio


def _order(records: list[object]) -> dict[str, list[str]]:
    pairs = []
    for record in records:
        headers = dict(record.headers)  # type: ignore[attr-defined]
        pairs.append((headers[HEADER_AGGREGATE_ID].decode(), headers[HEADER_ID].decode()))
    return order_by_aggregate(pairs)


async def test_partition_of_a_key_is_the_one_send_picks(kafka_bootstrap: str) -> None:
    producer = await start_producer(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    try:
        async with topics(kafka_bootstrap, partitions=7) as (topic,):
            partitions = Partitions(producer)
            await partitions.load(topic)
            keys = [f"order-{n}".encode() for n in range(60)] + [b"", "\u00e9t\u00e9".encode()]
            chosen = [partitions.of(topic, key) for key in keys]
            sent = [await producer.send(topic, b"v", key=key) for key in keys]
            by_send = [(await future).partition for future in sent]
    finally:
        await producer.stop()
    assert chosen == by_send
    assert len(set(chosen)) > 3


async def test_order_holds_over_many_batches_per_partition(
    kafka_bootstrap: str, open_publisher: PublisherFactory
) -> None:
    publisher = await open_publisher(max_batch_size=1024)  # a few records per batch
    async with topics(kafka_bootstrap, partitions=3) as (topic,):
        messages = [make_message(f"agg-{a}", n, topic=topic) for n in range(15) for a in range(20)]

        assert await publisher.publish(messages) == [Delivered()] * len(messages)

        records = await consume_records(kafka_bootstrap, topic, len(messages), 20)
    assert len(records) == len(messages)
    assert _order(records) == ids_by_aggregate(messages)


async def test_each_batch_is_reported_delivered_as_kafka_acknowledges_it(
    kafka_bootstrap: str, open_publisher: PublisherFactory
) -> None:
    publisher = await open_publisher(max_batch_size=1024)  # a few records per batch
    assert isinstance(publisher, ReportsDeliveries)
    async with topics(kafka_bootstrap, partitions=2) as (topic,):
        messages = [make_message(f"agg-{a}", n, topic=topic) for n in range(10) for a in range(4)]
        reports: list[list[int]] = []
        outcomes = await publisher.publish_reporting(messages, lambda i: reports.append(list(i)))
        records = await consume_records(kafka_bootstrap, topic, len(messages), 20)

    assert outcomes == [Delivered()] * len(messages)
    assert len(reports) > 2, "one report per batch, not one per call"
    assert sorted(i for report in reports for i in report) == list(range(len(messages)))
    # in each aggregate's broker order: a later message is never reported before an earlier one
    report_of = {str(messages[i].id): n for n, report in enumerate(reports) for i in report}
    for ids in _order(records).values():
        steps = [report_of[i] for i in ids]
        assert steps == sorted(steps)


@pytest.mark.timeout(60)
async def test_batch_refused_as_too_large_dead_letters_only_the_oversized_record(
    kafka_bootstrap: str, open_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The topic takes batches of 20,000 bytes at most: every partition's batch of this call
    # is bigger, and one record is too big even alone (though under max_request_size).
    publisher = await open_publisher()
    configs = {"max.message.bytes": "20000"}
    async with topics(kafka_bootstrap, partitions=3, configs=configs) as (topic,):
        padded = [
            msgspec.structs.replace(make_message(f"agg-{a}", n, topic=topic), payload=b"p" * 900)
            for n in range(3)
            for a in range(20)
        ]
        big = msgspec.structs.replace(make_message("big", 0, topic=topic), payload=b"x" * 25000)
        after_big = make_message("big", 1, topic=topic)
        messages = [*padded[:30], big, *padded[30:], after_big]

        with caplog.at_level(logging.WARNING, logger="outboxkit.kafka"):
            outcomes = await publisher.publish(messages)

        by_id = dict(zip((m.id for m in messages), outcomes, strict=True))
        refused = by_id[big.id]
        assert isinstance(refused, Failed) and not refused.retriable
        assert "MessageSizeTooLarge" in refused.error
        held = by_id[after_big.id]
        assert isinstance(held, Failed) and held.retriable and "not sent" in held.error
        assert [by_id[m.id] for m in padded] == [Delivered()] * len(padded)
        assert "batches to it now hold" in caplog.text
        # the producer whose sequence numbers the refused batches put out of step was
        # replaced: the partitions take records again
        assert publisher.stats.producer_restarts >= 1
        again = [make_message(f"agg-{a}", 9, topic=topic) for a in range(20)]
        assert await publisher.publish(again) == [Delivered()] * len(again)

        records = await consume_records(kafka_bootstrap, topic, len(padded) + len(again), 20)
    delivered: list[Message] = [*padded, *again]
    assert _order(records) == ids_by_aggregate(delivered)


@pytest.mark.timeout(60)
async def test_small_call_refused_as_too_large_is_retried_then_only_the_big_record_dead_letters(
    kafka_bootstrap: str, open_publisher: PublisherFactory
) -> None:
    # One record per call goes into the partition's shared batch; the topic refuses it.
    publisher = await open_publisher()
    async with topics(kafka_bootstrap, partitions=1, configs={"max.message.bytes": "20000"}) as (
        topic,
    ):
        big = msgspec.structs.replace(make_message("big", 0, topic=topic), payload=b"x" * 25000)
        small = make_message("small", 0, topic=topic)
        (first,) = await publisher.publish([big])
        assert isinstance(first, Failed) and first.retriable  # maybe the neighbours' fault
        (second,) = await publisher.publish([big])
        assert isinstance(second, Failed) and not second.retriable
        assert "MessageSizeTooLarge" in second.error
        assert await publisher.publish([small]) == [Delivered()]
        records = await consume_records(kafka_bootstrap, topic, 1, 20)
    assert _order(records) == ids_by_aggregate([small])
