"""A JetStream consumer that applies each outboxkit event once, with the SQLite inbox.

    python examples/inbox_nats_consumer.py

It pulls from a durable consumer on the ``ORDERS`` stream (subjects ``order.>``, as the NATS
publisher routes with ``--nats-subject-template 'order.{event_type}'``), counts the events of
each order in a local SQLite file, and acks a message only after its transaction committed:
a redelivered message (no ack before ``ack_wait``, or a crash) is skipped by the inbox.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3

import nats
from nats.js.api import AckPolicy, ConsumerConfig
from outboxkit_nats import read_msg

from outboxkit.inbox import UnreadableMessageError
from outboxkit.inbox.sqlite import SqliteInbox

log = logging.getLogger("order-stats")


async def main() -> None:
    db = sqlite3.connect("order_stats.db", isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS counts (order_id TEXT PRIMARY KEY, events INTEGER)")
    inbox = SqliteInbox()
    inbox.migrate(db)
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "order.>", durable="order-stats", config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT)
    )
    try:
        while True:
            try:
                msgs = await sub.fetch(100, timeout=5)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                try:
                    event = read_msg(msg)
                except UnreadableMessageError as exc:
                    log.error("%s", exc)
                    await msg.term()  # never redeliver what cannot be read
                    continue
                with inbox.process(db, event) as fresh:
                    if fresh:
                        db.execute(
                            "INSERT INTO counts VALUES (?, 1) ON CONFLICT (order_id) "
                            "DO UPDATE SET events = events + 1",
                            (event.aggregate_id,),
                        )
                await msg.ack()  # after the commit: a crash before it means a redelivery
    finally:
        await nc.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
