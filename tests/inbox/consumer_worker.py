"""A Kafka consumer applying outboxkit events to PostgreSQL state through the inbox: the
process the consumer tests kill, restart and run two of in one group.

Run as ``python consumer_worker.py`` with its settings in the environment:

* ``BOOTSTRAP``, ``TOPIC``, ``GROUP``, ``DSN``, ``SCHEMA`` (state and inbox tables live there);
* ``INBOX``: ``on`` (default) or ``off`` (the same consumer without the inbox: the control
  that shows what the tests catch);
* ``BATCH``: ``poll`` (one transaction per poll, ``process_batch``) or ``one`` (one per message);
* ``CRASH_AFTER_COMMIT``: probability of a SIGKILL of itself after a database commit and
  before the offset commit (the window the inbox exists for);
* ``GUARD``: the inbox's guard (default ``skip``);
* ``COMMIT_DELAY``: seconds between the database commit and the offset commit.

State: ``<schema>.state`` one row per aggregate: how many events were applied and their
sequence numbers and ids in the order applied. Unreadable records go to ``<schema>.errors``
(the consumer's error handling) and are skipped; nothing of them is applied.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError
from outboxkit_kafka import read_record
from outboxkit_postgres import PostgresInbox

from outboxkit.inbox import InboxMessage, UnreadableMessageError

APPLY = (
    "INSERT INTO {schema}.state AS s (aggregate_id, applied, sequences, ids) "
    "VALUES ($1, 1, ARRAY[$2::bigint], ARRAY[$3::text]) ON CONFLICT (aggregate_id) DO UPDATE "
    "SET applied = s.applied + 1, sequences = s.sequences || $2::bigint, ids = s.ids || $3::text"
)


async def apply(conn: asyncpg.Connection, schema: str, message: InboxMessage) -> None:
    await conn.execute(
        APPLY.format(schema=schema), message.aggregate_id, message.sequence, str(message.id)
    )


def crash_maybe(probability: float) -> None:
    if probability and random.random() < probability:
        os.kill(os.getpid(), signal.SIGKILL)


async def main() -> None:
    env = os.environ
    schema, inbox_on = env["SCHEMA"], env.get("INBOX", "on") == "on"
    per_poll = env.get("BATCH", "poll") == "poll"
    crash = float(env.get("CRASH_AFTER_COMMIT", "0"))
    commit_delay = float(env.get("COMMIT_DELAY", "0"))
    inbox = PostgresInbox(schema=schema, guard=env.get("GUARD", "skip"))  # type: ignore[arg-type]
    conn = await asyncpg.connect(env["DSN"])
    consumer = AIOKafkaConsumer(
        env["TOPIC"],
        bootstrap_servers=env["BOOTSTRAP"],
        group_id=env["GROUP"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=int(env.get("MAX_POLL", "50")),
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    print("consumer started", flush=True)
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            readable: list[InboxMessage] = []
            for records in batches.values():
                for record in records:
                    try:
                        readable.append(read_record(record))
                    except UnreadableMessageError as exc:
                        await conn.execute(
                            f"INSERT INTO {schema}.errors (source, error) VALUES ($1, $2)",
                            f"{record.topic}[{record.partition}]@{record.offset}",
                            str(exc),
                        )
            skipped = 0
            if not inbox_on:
                async with conn.transaction():
                    for message in readable:
                        await apply(conn, schema, message)
            elif per_poll:
                async with inbox.process_batch(conn, readable) as fresh:
                    for message in fresh:
                        await apply(conn, schema, message)
                skipped = len(readable) - len(fresh)
            else:
                skipped = 0
                for message in readable:
                    async with inbox.process(conn, message) as is_fresh:
                        if is_fresh:
                            await apply(conn, schema, message)
                        else:
                            skipped += 1
            if skipped:
                print(f"skipped {skipped}", flush=True)
            if batches:
                crash_maybe(crash)
                await asyncio.sleep(commit_delay)  # widen the window a rebalance can hit
                try:
                    await consumer.commit()
                except (CommitFailedError, KafkaError) as exc:
                    print(f"offset commit failed ({type(exc).__name__}); redelivery follows")
    finally:
        await consumer.stop()
        await conn.close()


def setup_sql(schema: str) -> list[str]:
    """The state and errors tables of the consumer (the inbox comes from its migrate)."""
    return [
        f"CREATE TABLE {schema}.state (aggregate_id text PRIMARY KEY, applied int NOT NULL, "
        "sequences bigint[] NOT NULL, ids text[] NOT NULL)",
        f"CREATE TABLE {schema}.errors (source text, error text)",
    ]


def _silence(*_: Any) -> None:  # SIGTERM: stop at once (the tests use SIGKILL anyway)
    os._exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _silence)
    asyncio.run(main())
