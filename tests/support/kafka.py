"""Kafka for the tests: throwaway topics created and deleted through the admin API (the test
broker does not auto-create topics), reading a topic back from its start, the broker's pid."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from outboxkit_kafka import KafkaPublisher

from outboxkit.testing import ReceivedRecord, unique_name
from tests.support import REPO
from tests.support.servers import configured, listening_pid

__all__ = [
    "PublisherFactory",
    "consume_records",
    "consumer_from_start",
    "kafka_pid",
    "partition_count",
    "received",
    "topics",
    "topics_deleted_after",
]

PublisherFactory = Callable[..., Awaitable[KafkaPublisher]]
"""The ``open_publisher`` fixture: ``await open_publisher(**settings)``."""


async def _leaders_elected(admin: AIOKafkaAdminClient, names: list[str], partitions: int) -> None:
    """Wait until the brokers' metadata shows every partition of ``names`` with a leader: a
    producer started earlier would get NotLeaderForPartition and retry (which a timed
    benchmark run must not count)."""
    while True:  # the caller bounds the wait
        described = await admin.describe_topics(names)
        ready = sum(
            1
            for topic in described
            if topic.get("error_code") == 0
            for p in topic.get("partitions") or []
            if p.get("leader", -1) >= 0 and p.get("error_code") == 0
        )
        if ready == partitions * len(names):
            return
        await anyio.sleep(0.05)


@asynccontextmanager
async def topics(
    bootstrap: str,
    count: int = 1,
    partitions: int = 1,
    names: list[str] | None = None,
    configs: dict[str, str] | None = None,
    prefix: str = "okt-kafka",
) -> AsyncIterator[list[str]]:
    """``count`` fresh topics ``PREFIX-<12 hex digits>`` (or those ``names``) of ``partitions``
    partitions each (with topic ``configs``), every partition with a leader on entry,
    deleted afterwards (even when the test is cancelled)."""
    names = names or [unique_name(prefix).replace("_", "-") for _ in range(count)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name=n, num_partitions=partitions, replication_factor=1, topic_configs=configs
                )
                for n in names
            ]
        )
        with anyio.fail_after(10):
            await _leaders_elected(admin, names, partitions)
        yield names
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await admin.delete_topics(names)
            finally:
                await admin.close()


@asynccontextmanager
async def topics_deleted_after(bootstrap: str, count: int = 1) -> AsyncIterator[list[str]]:
    """``count`` fresh topic names, not created here (the code under test creates them);
    whichever of them exist afterwards are deleted."""
    names = [unique_name("okt-create").replace("_", "-") for _ in range(count)]
    try:
        yield names
    finally:
        with anyio.CancelScope(shield=True):
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                if existing & set(names):
                    await admin.delete_topics(sorted(existing & set(names)))
            finally:
                await admin.close()


async def partition_count(bootstrap: str, topic: str) -> int:
    """How many partitions ``topic`` has."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
        return len(description["partitions"])
    finally:
        await admin.close()


def consumer_from_start(bootstrap: str, topic: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer (not started yet) of every partition of ``topic`` from its first record, in
    no consumer group and committing no offsets; ``options`` go to ``AIOKafkaConsumer``."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        **options,
    )


def received(record: ConsumerRecord[bytes, bytes]) -> ReceivedRecord:
    """A consumed record in the conformance suite's shape."""
    return ReceivedRecord(
        key=None if record.key is None else record.key.decode(),
        headers={k: v.decode() for k, v in record.headers},
        payload=record.value or b"",
    )


async def consume_records(
    bootstrap: str, topic: str, count: int, timeout: float
) -> list[ConsumerRecord[bytes, bytes]]:
    """Up to ``count`` records of ``topic`` from its start (all partitions, each in order),
    waiting at most about ``timeout`` seconds for them."""
    consumer = consumer_from_start(bootstrap, topic)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=count - len(records))
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def kafka_pid() -> int:
    """The pid of the Kafka broker (for outage tests).

    The pid file of ``scripts/services`` when it started Kafka; otherwise the process that
    listens on the bootstrap port (a broker this checkout reuses but did not start).
    """
    pid_file = REPO / ".services" / "run" / "kafka.pid"
    if pid_file.exists():
        return int(pid_file.read_text().strip())
    return listening_pid(int(configured("kafka").rsplit(":", 1)[1]))
