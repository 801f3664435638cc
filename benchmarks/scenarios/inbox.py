"""Scenario 8: a Kafka consumer's throughput with the Postgres inbox against the same
consumer without it.

A topic is filled once with ``size.messages`` outboxkit records (1 KiB JSON payloads over
``size.aggregates`` aggregates, with the relay's headers) before any clock starts. Each round
reads the whole topic from its start in a fresh consumer group, decodes every record
(``read_record``), applies it to a state table (one upsert per event: a counter and a sum per
aggregate) and commits the offsets after each poll. The variants differ only in the inbox:

* per poll: one transaction per poll, the events applied with one ``executemany``; with the
  inbox, ``PostgresInbox.process_batch`` adds one statement recording the poll's ids;
* per message: one transaction per event; with the inbox, ``PostgresInbox.process`` (over
  the first :data:`PER_MESSAGE_LIMIT` records only).

One consumer per mode reads the topic; its polls go alternately to the variant without and
the variant with the inbox, so background load (the machine is shared) hits both alike.
Throughput = records / seconds spent decoding, applying and committing offsets; the fetch,
the same for both, is not counted, which makes the ratio stricter than one over whole runs.
Ratio: cost = messages/s without / messages/s with (bar <= 1.3). Correctness: after each
round every event was applied once (state count = records) and each one handled with the
inbox has its id recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from outboxkit_kafka import read_record
from outboxkit_postgres import PostgresInbox, PostgresInboxAdmin, PostgresInboxSettings

from benchmarks.support.context import Context
from benchmarks.support.correctness import Correctness
from benchmarks.support.progress import progress, say
from benchmarks.support.run_results import Bar, Measure
from benchmarks.support.targets import unique
from benchmarks.support.workload import aggregate_id
from outboxkit.inbox import InboxMessage
from outboxkit.message import HEADER_SEQUENCE, Message
from outboxkit.protocols import Delivered

__all__ = ["run"]

SCENARIO = "8 consumer inbox"
BAR = Bar(op="<=", limit=1.3, text="without / with inbox <= 1.3")
MAX_POLL = 500
"""Records per poll (fewer on small topics, so each variant gets about ten polls)."""
PER_MESSAGE_LIMIT = 5_000
"""The per-message variants read at most this many records (a few hundred per second on a
loaded machine: a full-size topic would take many minutes)."""

Apply = Callable[[asyncpg.Connection, Sequence[InboxMessage]], Awaitable[int]]


class Consumer:
    """The consumer's state change and its inbox, in ``schema``."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.inbox = PostgresInbox(schema=schema)
        self._upsert = (
            f'INSERT INTO "{schema}".state AS s (aggregate_id, events, total) VALUES ($1, 1, $2) '
            "ON CONFLICT (aggregate_id) DO UPDATE SET events = s.events + 1, "
            "total = s.total + EXCLUDED.total"
        )

    async def change(self, conn: asyncpg.Connection, events: Sequence[InboxMessage]) -> None:
        """The state change: one upsert per event."""
        if len(events) == 1:
            await conn.execute(self._upsert, events[0].aggregate_id, events[0].data["amount"])
        elif events:
            await conn.executemany(
                self._upsert, [(e.aggregate_id, e.data["amount"]) for e in events]
            )

    async def poll_without(self, conn: asyncpg.Connection, events: Sequence[InboxMessage]) -> int:
        async with conn.transaction():
            await self.change(conn, events)
        return len(events)

    async def poll_with(self, conn: asyncpg.Connection, events: Sequence[InboxMessage]) -> int:
        async with self.inbox.process_batch(conn, events) as fresh:
            await self.change(conn, fresh)
        return len(fresh)

    async def each_without(self, conn: asyncpg.Connection, events: Sequence[InboxMessage]) -> int:
        for event in events:
            async with conn.transaction():
                await self.change(conn, [event])
        return len(events)

    async def each_with(self, conn: asyncpg.Connection, events: Sequence[InboxMessage]) -> int:
        applied = 0
        for event in events:
            async with self.inbox.process(conn, event) as fresh:
                if fresh:
                    await self.change(conn, [event])
                    applied += 1
        return applied


async def consume_round(
    bootstrap: str,
    topic: str,
    total: int,
    conn: asyncpg.Connection,
    variants: tuple[Apply, Apply],
    mode: str,
) -> tuple[list[float], list[int]]:
    """Read ``topic`` from its start in a new group; the polls go alternately to the two
    variants. Per variant: the seconds spent decoding, applying and committing offsets (the
    fetch is the same for both and not counted), and the records it handled."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique("bench-inbox"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=MAX_POLL,
    )
    await consumer.start()
    seen, polls = 0, 0
    seconds, records = [0.0, 0.0], [0, 0]
    per_poll = min(MAX_POLL, max(10, total // 20))  # at least ~20 polls, alternating
    try:
        async with progress(f"{SCENARIO}: {mode}", total) as tracker:
            while seen < total:
                batches = await consumer.getmany(timeout_ms=1000, max_records=per_poll)
                if not batches:
                    continue
                which = polls % 2
                started = time.perf_counter()
                events = [read_record(r) for batch in batches.values() for r in batch]
                await variants[which](conn, events[: total - seen])
                await consumer.commit()
                seconds[which] += time.perf_counter() - started
                records[which] += min(len(events), total - seen)
                seen += len(events)
                polls += 1
                tracker.add(len(events))
    finally:
        await consumer.stop()
    return seconds, records


async def fill(ctx: Context, topic: str) -> int:
    """Publish the topic's records with the Kafka publisher; how many."""
    size = ctx.size
    note = os.urandom(max(0, size.payload_bytes - 64) // 2).hex()
    messages = [
        Message.create(
            aggregate_type="account",
            aggregate_id=aggregate_id(i % size.aggregates),
            event_type="account.credited",
            payload={"amount": 1, "note": note},
            topic=topic,
            headers={HEADER_SEQUENCE: str(1 + i // size.aggregates)},
        )
        for i in range(size.messages)
    ]
    publisher = ctx.broker("kafka").publisher(topic)
    await publisher.open()
    try:
        for start in range(0, len(messages), 1000):
            outcomes = await publisher.publish(messages[start : start + 1000])
            if not all(isinstance(o, Delivered) for o in outcomes):
                raise RuntimeError(f"filling {topic} failed: {outcomes[:3]}")
    finally:
        await publisher.close()
    return len(messages)


async def prepare(dsn: str, schema: str) -> None:
    admin = PostgresInboxAdmin(PostgresInboxSettings(dsn=dsn, schema=schema))
    await admin.open()
    try:
        await admin.migrate()
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f'CREATE TABLE "{schema}".state (aggregate_id text PRIMARY KEY, events bigint NOT '
            "NULL, total bigint NOT NULL)"
        )
    finally:
        await conn.close()


async def run(ctx: Context) -> None:
    dsn, bootstrap = ctx.servers.postgres, ctx.servers.kafka
    schema = unique("bench_inbox").replace("-", "_")
    await prepare(dsn, schema)
    conn = await asyncpg.connect(dsn)
    consumer = Consumer(schema)
    pairs: dict[str, tuple[Apply, Apply]] = {  # (without, with)
        "per poll": (consumer.poll_without, consumer.poll_with),
        "per message": (consumer.each_without, consumer.each_with),
    }
    seconds: dict[str, list[float]] = {mode: [0.0, 0.0] for mode in pairs}
    records: dict[str, list[int]] = {mode: [0, 0] for mode in pairs}
    try:
        async with ctx.broker("kafka").destination("inbox") as topic:
            total = await fill(ctx, topic)
            counts = {"per poll": total, "per message": min(total, PER_MESSAGE_LIMIT)}
            for _ in range(ctx.size.write_rounds):
                for mode, variants in pairs.items():
                    await conn.execute(
                        f'TRUNCATE "{schema}".state, "{schema}".inbox, "{schema}".inbox_aggregates'
                    )
                    took, handled = await consume_round(
                        bootstrap, topic, counts[mode], conn, variants, mode
                    )
                    for i in (0, 1):
                        seconds[mode][i] += took[i]
                        records[mode][i] += handled[i]
                    await check(ctx, conn, schema, counts[mode], handled[1], mode)
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    rounds = ctx.size.write_rounds
    for mode in pairs:
        alone, with_inbox = (records[mode][i] / seconds[mode][i] for i in (0, 1))
        say(f"{SCENARIO}: {mode}: {alone:,.0f} msg/s without, {with_inbox:,.0f} msg/s with")
        ctx.results.measures.append(
            Measure(
                scenario=SCENARIO,
                step=f"consumer {mode} with the Postgres inbox, {counts[mode]} records",
                value=with_inbox,
                unit="msg/s",
                baseline=alone,
                baseline_label=f"same consumer {mode} without the inbox",
                ratio=alone / with_inbox if with_inbox else float("inf"),
                ratio_label="without/with",
                bar=BAR,
                details=_details(rounds, mode),
            )
        )


def _details(rounds: int, mode: str) -> dict[str, Any]:
    per_poll = mode == "per poll"
    return {
        "rounds": rounds,
        "max_poll_records": MAX_POLL,
        "transactions": "one per poll" if per_poll else "one per message",
        "inbox_api": "process_batch" if per_poll else "process",
    }


async def check(
    ctx: Context, conn: asyncpg.Connection, schema: str, total: int, with_inbox: int, mode: str
) -> None:
    """Every record applied exactly once (the state counts ``total`` events), and every one
    handled with the inbox recorded in it."""
    applied = int(await conn.fetchval(f'SELECT coalesce(sum(events), 0) FROM "{schema}".state'))
    recorded = int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".inbox'))
    ctx.results.correctness.append(
        Correctness(
            scenario=SCENARIO,
            step=f"consumer {mode}: events applied = records, inbox ids = records with it",
            expected=total,
            received=applied,
            lost=max(0, total - applied),
            duplicates=max(0, applied - total),
            order_violations=0,
            unexpected=abs(recorded - with_inbox),
        )
    )
