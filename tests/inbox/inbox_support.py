"""What the consumer-side tests share: a scratch schema with an outbox (the producer), an
inbox and the consumer's state (the consumer), relay and consumer processes.

Tests import it as ``tests.inbox.inbox_support``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg
from aiokafka import AIOKafkaProducer
from outboxkit_postgres import (
    PostgresInboxAdmin,
    PostgresInboxSettings,
    PostgresOutbox,
)

from outboxkit.message import Message, broker_headers
from tests.inbox.consumer_worker import setup_sql
from tests.support.postgres import execute, outbox_schema
from tests.support.processes import ChildProcess

__all__ = [
    "HERE",
    "Scratch",
    "check_state",
    "consumer_process",
    "credits",
    "kafka_record",
    "produce",
    "relay_process",
    "scratch_schema",
    "write_events",
]

HERE = Path(__file__).resolve().parent


@dataclass
class Scratch:
    """A schema holding the producer's outbox and the consumer's inbox and state."""

    dsn: str
    schema: str

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)


@asynccontextmanager
async def scratch_schema(dsn: str, consumer_state: bool = False) -> AsyncIterator[Scratch]:
    """A fresh schema with a migrated outbox (4 shards) and inbox (and, if ``consumer_state``,
    the state and errors tables of ``consumer_worker.py``), dropped afterwards."""
    async with outbox_schema(dsn, 4, "okt_inbox") as schema:
        admin = PostgresInboxAdmin(PostgresInboxSettings(dsn=dsn, schema=schema))
        await admin.open()
        try:
            await admin.migrate()
        finally:
            await admin.close()
        if consumer_state:
            await execute(dsn, *setup_sql(schema))
        yield Scratch(dsn, schema)


async def write_events(
    scratch: Scratch,
    topic: str,
    aggregates: int,
    per_aggregate: int,
    seed: int = 1,
    pause: float = 0.0,
) -> dict[str, list[str]]:
    """Commit ``per_aggregate`` events of each of ``aggregates`` aggregates, interleaved, one
    transaction each; the ids per aggregate in commit order."""
    import random

    rng = random.Random(seed)
    outbox = PostgresOutbox(schema=scratch.schema)
    plan = [f"agg-{a}" for a in range(aggregates) for _ in range(per_aggregate)]
    rng.shuffle(plan)
    committed: dict[str, list[str]] = {}
    conn = await scratch.connect()
    try:
        for n, aggregate in enumerate(plan):
            message = Message.create(
                aggregate_type="account",
                aggregate_id=aggregate,
                event_type="account.credited",
                payload={"n": n, "amount": 1},
                topic=topic,
            )
            async with conn.transaction():
                await outbox.add(conn, message)
            committed.setdefault(aggregate, []).append(str(message.id))
            if pause:
                await anyio.sleep(pause)
    finally:
        await conn.close()
    return committed


def credits(topic: str, *amounts: int) -> list[Message]:
    """An event crediting each of ``amounts`` to aggregate ``acc``, in that order."""
    return [
        Message.create(
            aggregate_type="account",
            aggregate_id="acc",
            event_type="credited",
            payload={"amount": amount},
            topic=topic,
        )
        for amount in amounts
    ]


async def produce(bootstrap: str, topic: str, records: Sequence[dict[str, object]]) -> None:
    """Send ``records`` (keyword arguments of ``send_and_wait``, as :func:`kafka_record`
    makes them) to ``topic`` one after the other."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(topic, **record)
    finally:
        await producer.stop()


def kafka_record(message: Message, payload: bytes | None = None) -> dict[str, object]:
    """``message`` as the relay's Kafka publisher sends it (keyword arguments of
    ``AIOKafkaProducer.send_and_wait``), with ``payload`` instead of its own if given."""
    headers = [(k, v.encode()) for k, v in broker_headers(message)]
    headers.append(("content-type", message.content_type.encode()))
    value = message.payload if payload is None else payload
    return {"value": value, "key": message.aggregate_id.encode(), "headers": headers}


def relay_process(scratch: Scratch, bootstrap: str, log_dir: Path, name: str) -> ChildProcess:
    """``outboxkit relay --store pg --publisher kafka`` on the scratch outbox."""
    env = {
        "OUTBOXKIT_PG_DSN": scratch.dsn,
        "OUTBOXKIT_PG_SCHEMA": scratch.schema,
        "OUTBOXKIT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "OUTBOXKIT_BATCH_SIZE": "50",
        "OUTBOXKIT_LEASE_TTL": "2",
        "OUTBOXKIT_POLL_INTERVAL": "0.5",
        "OUTBOXKIT_MAX_ATTEMPTS": "1000",
    }
    argv = [sys.executable, "-m", "outboxkit.cli", "relay", "--store", "pg"]
    argv += ["--publisher", "kafka", "--instance-id", name]
    return ChildProcess(argv, env, log_dir / f"{name}.log")


def consumer_process(
    scratch: Scratch, bootstrap: str, topic: str, log_dir: Path, name: str, **settings: str
) -> ChildProcess:
    """``consumer_worker.py`` (see its docs) on the scratch schema, in group ``GROUP``."""
    env = {
        "BOOTSTRAP": bootstrap,
        "TOPIC": topic,
        "GROUP": f"{topic}-group",
        "DSN": scratch.dsn,
        "SCHEMA": scratch.schema,
        **settings,
    }
    argv = [sys.executable, str(HERE / "consumer_worker.py")]
    return ChildProcess(argv, env, log_dir / f"{name}.log")


async def check_state(scratch: Scratch, committed: dict[str, list[str]]) -> tuple[list[str], int]:
    """The problems of the consumer's state against the committed events (each applied once,
    in commit order per aggregate), and how many events it applied."""
    conn = await scratch.connect()
    try:
        rows = await conn.fetch(
            f"SELECT aggregate_id, applied, ids, sequences FROM {scratch.schema}.state"
        )
    finally:
        await conn.close()
    problems: list[str] = []
    applied = {r["aggregate_id"]: list(r["ids"]) for r in rows}
    for r in rows:  # the relay's outboxkit-sequence header: present, growing per aggregate
        sequences = list(r["sequences"])
        if None in sequences or sequences != sorted(set(sequences)):
            problems.append(f"{r['aggregate_id']}: sequence headers {sequences[:8]}...")
    total = 0
    for aggregate, ids in committed.items():
        got = applied.get(aggregate, [])
        total += len(got)
        if len(got) != len(set(got)):
            problems.append(f"{aggregate}: {len(got) - len(set(got))} events applied twice")
        if got != ids:
            problems.append(f"{aggregate}: applied {len(got)} of {len(ids)} or out of order")
    return problems, total
