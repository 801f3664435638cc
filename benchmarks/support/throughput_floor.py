"""The throughput floor of scenario 1: hand-written at-most-once relays, the least any outbox
must do to move a backlog from the store to the broker.

Postgres: ``FLOOR_WORKERS`` loops in parallel, each owning every ``FLOOR_WORKERS``-th shard
(so per-aggregate order holds and no two loops touch the same rows). A loop runs one
``DELETE ... RETURNING`` of the oldest ``batch`` rows of a shard (through the primary key),
hands them to the raw client, waits for the broker's acknowledgement and repeats, shard after
shard, until a pass over its shards finds nothing. No lease, no fencing, no retry, no
metrics: a crash between the DELETE and the acknowledgement loses the batch.

MongoDB: the same loops, each reading the oldest pending aggregate documents of its shards
(the claim index), publishing their entries and removing them with one ``$pull`` per
document (``bulk_write``).

The broker side (:class:`KafkaSender`, :class:`NatsSender`) is the fastest baseline's way:
per-partition batches with ``send_batch()`` (the publisher's producer settings), or
``publish_async()`` with ``Nats-Msg-Id``. Connections and the client are opened before the
clock starts; the clock stops at the last acknowledgement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import anyio
import asyncpg
import msgspec
import nats
from aiokafka import AIOKafkaProducer
from outboxkit_kafka import KafkaSettings
from outboxkit_kafka.connection import producer_options
from outboxkit_kafka.publisher import CONTENT_TYPE_HEADER as CONTENT_TYPE
from outboxkit_mongodb import MongoSettings
from outboxkit_mongodb.bulk import bulk_write
from outboxkit_mongodb.names import OutboxFields
from outboxkit_nats.publisher import CONTENT_TYPE_HEADER as NATS_CONTENT_TYPE
from pymongo import AsyncMongoClient, UpdateOne

from benchmarks.support.baselines import send_batches
from outboxkit.message import (
    HEADER_AGGREGATE_ID,
    HEADER_AGGREGATE_TYPE,
    HEADER_EVENT_TYPE,
    HEADER_ID,
)

__all__ = ["FLOOR_WORKERS", "KafkaSender", "NatsSender", "Sender", "mongo_floor", "pg_floor"]

FLOOR_WORKERS = 8
"""Loops in parallel. In alternating 20,000-30,000-message runs (pg -> kafka, 2026-12-03,
loaded machine) 4 and 8 were indistinguishable, 2 slower, 16 no faster."""

Item = tuple[bytes, bytes, list[tuple[str, str]]]
"""(key, payload, headers) of one message as the floor reads it."""

_headers = msgspec.json.Decoder(dict[str, str])


class Sender(Protocol):
    async def start(self) -> None: ...

    async def send(self, items: Sequence[Item]) -> None:
        """Send ``items`` in order and wait until the broker acknowledged all of them."""

    async def stop(self) -> None: ...


class KafkaSender:
    def __init__(self, bootstrap: str, topic: str) -> None:
        settings = KafkaSettings(bootstrap_servers=bootstrap)
        self._producer = AIOKafkaProducer(**producer_options(settings))
        self._topic = topic
        self._partitions: tuple[list[int], list[int]] = ([], [])
        self._chosen: dict[bytes, int] = {}

    async def start(self) -> None:
        await self._producer.start()
        await self._producer.partitions_for(self._topic)
        metadata = self._producer._metadata
        self._partitions = (
            list(metadata.partitions_for_topic(self._topic)),
            list(metadata.available_partitions_for_topic(self._topic)),
        )

    def _partition(self, key: bytes) -> int:
        partition = self._chosen.get(key)
        if partition is None:
            partition = self._producer._partitioner(key, *self._partitions)
            self._chosen[key] = partition
        return partition

    async def send(self, items: Sequence[Item]) -> None:
        await asyncio.gather(*await self.enqueue(items))

    async def enqueue(self, items: Sequence[Item]) -> list[asyncio.Future[Any]]:
        """Hand ``items`` to the producer in order; their batches' delivery futures."""
        records = [
            (self._partition(key), key, payload, [(k, v.encode()) for k, v in headers])
            for key, payload, headers in items
        ]
        return await send_batches(self._producer, self._topic, records)

    async def stop(self) -> None:
        await self._producer.stop()


class NatsSender:
    def __init__(self, url: str, subject: str) -> None:
        self._url = url
        self._subject = subject
        self._client: Any = None
        self._js: Any = None

    async def start(self) -> None:
        self._client = await nats.connect(self._url)
        self._js = self._client.jetstream(publish_async_max_pending=4_000)
        await self._js._init_async_reply()  # the reply inbox publish_async() sets up once

    async def send(self, items: Sequence[Item]) -> None:
        publish = self._js.publish_async
        futures = []
        for _, payload, headers in items:
            fields = dict(headers)
            fields[NATS_CONTENT_TYPE] = fields.pop(CONTENT_TYPE)
            fields["Nats-Msg-Id"] = fields[HEADER_ID]
            futures.append(await publish(self._subject, payload, headers=fields))
        await asyncio.gather(*futures)

    async def stop(self) -> None:
        await self._client.close()


def item(fields: Mapping[str, Any], headers: Mapping[str, str]) -> Item:
    """The broker record of a stored message: its key, payload and the headers the
    publishers send (its own, the outboxkit ones, its content type)."""
    pairs = [(k, v) for k, v in headers.items() if not k.startswith("outboxkit-")]
    pairs += [
        (HEADER_ID, str(fields["id"])),
        (HEADER_AGGREGATE_TYPE, fields["aggregate_type"]),
        (HEADER_AGGREGATE_ID, fields["aggregate_id"]),
        (HEADER_EVENT_TYPE, fields["event_type"]),
        (CONTENT_TYPE, fields["content_type"]),
    ]
    key = fields["key"] if fields["key"] is not None else fields["aggregate_id"]
    return key.encode(), bytes(fields["payload"]), pairs


TAKE = """
DELETE FROM {table} WHERE shard = $1 AND seq IN (
    SELECT seq FROM {table} WHERE shard = $1 ORDER BY seq LIMIT $2)
RETURNING seq, id, aggregate_type, aggregate_id, event_type, key, headers::text, payload,
          content_type
"""


async def pg_floor(
    dsn: str, table: str, shard_count: int, sender: Sender, batch: int, count: int
) -> float:
    """Move the ``count`` rows of ``table`` (schema-qualified, quoted) to the broker; return
    the seconds from the first DELETE to the last acknowledgement."""
    query = TAKE.format(table=table)
    pool = await asyncpg.create_pool(dsn, min_size=FLOOR_WORKERS, max_size=FLOOR_WORKERS)
    await sender.start()
    moved = [0]

    async def loop(shards: Sequence[int]) -> None:
        async with pool.acquire() as conn:
            take = await conn.prepare(query)
            found = True
            while found:
                found = False
                for shard in shards:
                    rows = await take.fetch(shard, batch)
                    if rows:
                        found = True
                        rows.sort(key=lambda row: row["seq"])
                        items = [item(row, _headers.decode(row["headers"])) for row in rows]
                        await sender.send(items)
                        moved[0] += len(rows)

    try:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for worker in range(FLOOR_WORKERS):
                tg.start_soon(loop, range(worker, shard_count, FLOOR_WORKERS))
        seconds = time.perf_counter() - started
    finally:
        await sender.stop()
        await pool.close()
    if moved[0] != count:
        raise RuntimeError(f"the floor moved {moved[0]} of {count} rows")
    return seconds


async def mongo_floor(
    settings: MongoSettings,
    collection: str,
    sender: Sender,
    batch: int,
    count: int,
    *,
    per_command: int | None,
) -> float:
    """Move the ``count`` pending entries of ``collection`` to the broker; return the seconds
    from the first read to the last acknowledgement."""
    f = OutboxFields()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.url, tz_aware=True)
    aggregates = client[settings.database][collection]
    workers = min(FLOOR_WORKERS, settings.shard_count)
    await sender.start()
    moved = [0]

    async def loop(shards: Sequence[int]) -> None:
        found = True
        while found:
            found = False
            for shard in shards:
                docs = await (
                    aggregates.find({f.shard: shard, f.pending: True}, {f.array: 1})
                    .sort(f.since, 1)
                    .limit(max(1, batch // 10))
                    .to_list()
                )
                if not docs:
                    continue
                found = True
                items = [
                    item(entry, entry.get("headers") or {})
                    for doc in docs
                    for entry in doc[f.array]
                ]
                await sender.send(items)
                ops = [
                    UpdateOne(
                        {"_id": doc["_id"]},
                        {
                            "$pull": {f.array: {"id": {"$in": [e["id"] for e in doc[f.array]]}}},
                            "$unset": {f.pending: ""},
                        },
                    )
                    for doc in docs
                ]
                await bulk_write(aggregates, ops, per_command=per_command)
                moved[0] += len(items)

    try:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for worker in range(workers):
                tg.start_soon(loop, range(worker, settings.shard_count, workers))
        seconds = time.perf_counter() - started
    finally:
        await sender.stop()
        await client.close()
    if moved[0] != count:
        raise RuntimeError(f"the floor moved {moved[0]} of {count} entries")
    return seconds
