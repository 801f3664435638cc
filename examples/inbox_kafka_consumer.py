"""A Kafka consumer that applies each outboxkit event once, with the Postgres inbox.

    outboxkit inbox migrate --inbox pg --pg-inbox-dsn postgresql://localhost/billing
    python examples/inbox_kafka_consumer.py

It reads the ``orders`` topic the relay fills (see examples/order_service.py), adds each
``OrderCreated`` total to the customer's balance, records the event id in the same
transaction, and commits the offsets after the database: a crash anywhere means the events
come again, and the inbox skips those already applied. Records outboxkit did not write are
logged and skipped (route them to a dead-letter topic in a real service).
"""

from __future__ import annotations

import asyncio
import logging
import os

import asyncpg
from aiokafka import AIOKafkaConsumer
from outboxkit_kafka import read_record
from outboxkit_postgres import PostgresInbox

from outboxkit.inbox import InboxMessage, UnreadableMessageError

log = logging.getLogger("billing")

DSN = os.environ.get("BILLING_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


async def apply(conn: asyncpg.Connection, event: InboxMessage) -> None:
    """The state change: runs inside the inbox's transaction."""
    if event.event_type == "OrderCreated":
        await conn.execute(
            "INSERT INTO balances (customer, total) VALUES ($1, $2) ON CONFLICT (customer) "
            "DO UPDATE SET total = balances.total + EXCLUDED.total",
            event.data["customer"],
            event.data["total_cents"],
        )


async def main() -> None:
    inbox = PostgresInbox(guard="skip")  # also skip an order's events older than one applied
    conn = await asyncpg.connect(DSN)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS balances (customer text PRIMARY KEY, total bigint NOT NULL)"
    )
    consumer = AIOKafkaConsumer(
        "orders",
        bootstrap_servers=BOOTSTRAP,
        group_id="billing",
        enable_auto_commit=False,  # commit after the database, never before
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while True:
            polled = await consumer.getmany(timeout_ms=1000)
            events = []
            for records in polled.values():
                for record in records:
                    try:
                        events.append(read_record(record))
                    except UnreadableMessageError as exc:
                        log.error("%s", exc)  # one line: what is wrong, where
            # One transaction per poll: the fresh events and their ids commit together.
            async with inbox.process_batch(conn, events) as fresh:
                for event in fresh:
                    await apply(conn, event)
            if polled:
                await consumer.commit()
    finally:
        await consumer.stop()
        await conn.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
