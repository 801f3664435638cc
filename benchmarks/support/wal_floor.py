"""The WAL-only throughput floor of scenario 9: a hand-written at-most-once slot reader.

One reader streams its own replication slot and publication (both named alike, as
``outboxkit_postgres.slot.ensure_slot`` creates them before the messages are emitted, so it
sees the same ones as the relay's) through the same psycopg2 replication connection the
relay uses, keeps the logical decoding messages of the outbox's prefix, turns their rows
straight into Kafka records (no ``Message``, no settlement, no order bookkeeping beyond the
stream's) and hands each chunk read to the producer as per-partition batches, in stream
order, without waiting for the acknowledgements of earlier chunks. The slot is never
confirmed: a crash loses nothing here only because the slot is dropped afterwards. The clock
runs from the first read to the last acknowledgement.
"""

from __future__ import annotations

import asyncio  # aiokafka's delivery futures
import time
from typing import Any
from uuid import UUID

from outboxkit_postgres.codec import decode_wal_rows
from outboxkit_postgres.pgoutput import LogicalMessage, decode
from outboxkit_postgres.slot import SlotStream

from benchmarks.support.throughput_floor import Item, KafkaSender, item

__all__ = ["wal_floor"]

READ = 5000
"""Records read from the stream per turn."""


def wal_items(body: bytes) -> list[Item]:
    """The Kafka records of one WAL-only message body."""
    items = []
    for i, at, ai, et, _topic, key, headers, payload, ct, _created in decode_wal_rows(body):
        fields = {
            "id": UUID(bytes=i),
            "aggregate_type": at,
            "aggregate_id": ai,
            "event_type": et,
            "key": key,
            "payload": payload,
            "content_type": ct,
        }
        items.append(item(fields, headers))
    return items


async def wal_floor(dsn: str, slot: str, prefix: str, sender: KafkaSender, count: int) -> float:
    """Send the first ``count`` outbox messages of ``slot`` to the broker; return the seconds
    from the first read to the last acknowledgement."""
    stream = SlotStream(dsn, slot, slot, connect_timeout=10.0)
    await stream.open()
    await sender.start()
    moved = 0
    deliveries: list[asyncio.Future[Any]] = []
    try:
        started = time.perf_counter()
        while moved < count:
            records = stream.read(READ)
            if not records:
                await stream.wait(1.0)
                continue
            items: list[Item] = []
            for _start, payload in records:
                record = decode(payload)
                if isinstance(record, LogicalMessage) and record.prefix == prefix:
                    items += wal_items(record.content)
            if items:
                moved += len(items)
                deliveries += await sender.enqueue(items)
        await asyncio.gather(*deliveries)
        seconds = time.perf_counter() - started
    finally:
        stream.close()
        await sender.stop()
    if moved != count:
        raise RuntimeError(f"the WAL floor moved {moved} of {count} messages")
    return seconds
