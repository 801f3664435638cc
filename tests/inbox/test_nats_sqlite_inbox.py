"""A JetStream consumer with the SQLite inbox: messages redelivered because the consumer
did not ack them (as after a crash between its commit and its ack) are applied once; a
message outboxkit did not publish is refused with one clear error and changes nothing."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from outboxkit_nats import NatsPublisher, NatsSettings, read_msg

from outboxkit.inbox import UnreadableMessageError
from outboxkit.inbox.sqlite import SqliteInbox
from outboxkit.message import Message
from outboxkit.protocols import Delivered

pytestmark = pytest.mark.anyio


async def test_redelivered_messages_are_applied_once(nats_url: str, tmp_path: Path) -> None:
    name = f"OKT_INBOX_{uuid.uuid4().hex[:8].upper()}"
    subject = f"{name.lower()}.events"
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
    try:
        publisher = NatsPublisher(NatsSettings(servers=[nats_url], subject_template=subject))
        await publisher.open()
        events = [
            Message.create(
                aggregate_type="a",
                aggregate_id=f"acc-{n % 2}",
                event_type="credited",
                payload={"amount": n},
            )
            for n in range(6)
        ]
        assert all(isinstance(o, Delivered) for o in await publisher.publish(events))
        await publisher.close()
        await js.publish(subject, b"not ours")
        db = sqlite3.connect(tmp_path / "consumer.db", isolation_level=None)
        db.execute("CREATE TABLE totals (id TEXT PRIMARY KEY, amount INTEGER)")
        inbox = SqliteInbox(guard="skip")
        inbox.migrate(db)
        sub = await js.pull_subscribe(
            subject, durable="c", config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=1)
        )
        errors: list[str] = []
        applied = skipped = 0

        async def consume(count: int, ack: bool) -> None:
            nonlocal applied, skipped
            msgs = []
            while len(msgs) < count:
                msgs += await sub.fetch(count - len(msgs), timeout=5)
            for msg in msgs:
                try:
                    message = read_msg(msg)
                except UnreadableMessageError as exc:
                    errors.append(str(exc))  # the consumer's error handling: log, terminate
                    await msg.term()
                    continue
                with inbox.process(db, message) as fresh:
                    if fresh:
                        applied += 1
                        db.execute(
                            "INSERT INTO totals VALUES (?, ?) ON CONFLICT (id) DO UPDATE "
                            "SET amount = amount + excluded.amount",
                            (message.aggregate_id, message.data["amount"]),
                        )
                    else:
                        skipped += 1
                if ack:
                    await msg.ack()

        await consume(7, ack=False)  # committed, never acked: as if it crashed before acking
        await consume(6, ack=True)  # redelivered after ack_wait (the foreign one was termed)
        totals = dict(db.execute("SELECT id, amount FROM totals").fetchall())
        assert totals == {"acc-0": 0 + 2 + 4, "acc-1": 1 + 3 + 5}
        assert applied == 6 and skipped == 6
        assert len(errors) == 1 and "no outboxkit headers" in errors[0] and subject in errors[0]
    finally:
        await js.delete_stream(name)
        await nc.close()
