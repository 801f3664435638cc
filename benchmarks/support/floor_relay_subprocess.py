"""The floor of scenario 3, a hand-written minimal relay, run as a child process:
``python -m benchmarks.support.floor_relay_subprocess``.

Same protocol as ``benchmarks.support.relay_subprocess --acks``: prints ``ready``, starts on
a line on stdin, prints ``owned``, and on SIGTERM writes the ack time of every message to
``--acks``.
Per wake-up (a NOTIFY, or 1 s) it runs one statement that deletes and returns every pending
row, then sends them in sequence order with a raw aiokafka producer (the Kafka publisher's
settings: idempotent, ``acks=all``; the raw baseline's headers) and notes when all were
acknowledged. No lease, no fencing, no retry -- it is not at-least-once, only the least work
any LISTEN/NOTIFY relay can do: one database round trip and one produce request per wake-up.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any

import anyio
import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer
from outboxkit_kafka import KafkaSettings
from outboxkit_kafka.connection import producer_options
from outboxkit_postgres.codec import envelope_from_row
from outboxkit_postgres.names import OutboxNames

from benchmarks.support.baselines import kafka_headers
from outboxkit.cli.event_loop import backend_options
from outboxkit.message import route

__all__ = ["main"]

TOPIC_TEMPLATE = KafkaSettings().topic_template
TAKE_ALL = """
DELETE FROM {{schema}}.{{table}}
RETURNING seq, id, aggregate_type, aggregate_id, event_type, topic, key, headers::text,
          payload, content_type, created_at, attempts
"""


async def relay_once(
    conn: asyncpg.Connection, query: str, producer: AIOKafkaProducer, acked: dict[str, float]
) -> None:
    """Take every pending row, send it, note when the broker acknowledged them all."""
    rows = sorted(await conn.fetch(query), key=lambda row: row["seq"])
    futures: list[Any] = []
    ids = []
    for row in rows:
        message = envelope_from_row(row, 0).message
        key, headers = message.partition_key.encode(), kafka_headers(message)
        topic = route(message, TOPIC_TEMPLATE)
        futures.append(await producer.send(topic, message.payload, key=key, headers=headers))
        ids.append(str(message.id))
    if futures:
        await asyncio.gather(*futures)
        now = time.time()
        acked.update((i, now) for i in ids)


async def serve(args: argparse.Namespace) -> None:
    names = OutboxNames(args.schema, "outbox")
    query = names.render(TAKE_ALL)
    producer = AIOKafkaProducer(**producer_options(KafkaSettings(bootstrap_servers=args.bootstrap)))
    await producer.start()
    conn = await asyncpg.connect(args.dsn)
    listener = await asyncpg.connect(args.dsn)
    woken = asyncio.Event()
    await listener.add_listener(names.channel, lambda *_: woken.set())
    acked: dict[str, float] = {}
    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    print("owned", flush=True)
    cpu = time.process_time()
    async with anyio.create_task_group() as tg:

        async def on_sigterm() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()

        tg.start_soon(on_sigterm)
        while True:
            with anyio.move_on_after(1.0):
                await woken.wait()
            woken.clear()
            await relay_once(conn, query, producer, acked)
    used = time.process_time() - cpu
    with anyio.CancelScope(shield=True):
        await producer.stop()
        await conn.close()
        await listener.close()
    await anyio.Path(args.acks).write_bytes(msgspec.json.encode({"acked": acked, "cpu_s": used}))


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--dsn", "--schema", "--bootstrap", "--acks"):
        parser.add_argument(name, required=True)
    anyio.run(serve, parser.parse_args(), backend_options=backend_options("auto"))


if __name__ == "__main__":
    main()
