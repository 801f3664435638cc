"""What the consumer-side tests share: a scratch schema with an outbox (the producer), an
inbox and the consumer's state (the consumer), a fresh topic, relay and consumer processes.

Tests import it as ``tests.inbox.inbox_support``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from outboxkit_postgres import (
    PostgresInboxAdmin,
    PostgresInboxSettings,
    PostgresOutbox,
    PostgresSettings,
    PostgresStore,
)

from outboxkit.message import Message
from outboxkit.testing import unique_name

__all__ = [
    "HERE",
    "REPO",
    "Process",
    "Scratch",
    "check_state",
    "kafka_topic",
    "scratch_schema",
    "wait_for",
]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


async def wait_for(check, timeout: float, what: str, interval: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    """Poll the async ``check`` until true; TimeoutError naming ``what``."""
    with anyio.move_on_after(timeout):
        while not await check():  # noqa: ASYNC110 - polling a database, no event to wait on
            await anyio.sleep(interval)
        return
    raise TimeoutError(f"not within {timeout:g}s: {what}")


@dataclass
class Scratch:
    """A schema holding the producer's outbox and the consumer's inbox and state."""

    dsn: str
    schema: str

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)


@asynccontextmanager
async def scratch_schema(dsn: str, extra_sql: Sequence[str] = ()) -> AsyncIterator[Scratch]:
    """A fresh schema with a migrated outbox (4 shards) and inbox, dropped afterwards."""
    schema = unique_name("okt_inbox")
    store = PostgresStore(PostgresSettings(dsn=dsn, schema=schema, shard_count=4))
    await store.migrate()
    await store.close()
    admin = PostgresInboxAdmin(PostgresInboxSettings(dsn=dsn, schema=schema))
    await admin.open()
    try:
        await admin.migrate()
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn)
    try:
        for statement in extra_sql:
            await conn.execute(statement)
    finally:
        await conn.close()
    try:
        yield Scratch(dsn, schema)
    finally:
        with anyio.CancelScope(shield=True):
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await conn.close()


@asynccontextmanager
async def kafka_topic(bootstrap: str, partitions: int = 4) -> AsyncIterator[str]:
    """A fresh topic, deleted afterwards."""
    name = unique_name("okt-inbox").replace("_", "-")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=1)]
        )

        async def visible() -> bool:
            return name in await admin.list_topics()

        await wait_for(visible, 10, f"topic {name}")
        yield name
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await admin.delete_topics([name])
            finally:
                await admin.close()


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


class Process:
    """A child process in its own session, its output in ``log_path``."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv, self.env, self.log_path = argv, env, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXKIT_")}
        full_env.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as in a crash, and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def relay_process(scratch: Scratch, bootstrap: str, log_dir: Path, name: str) -> Process:
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
    return Process(argv, env, log_dir / f"{name}.log")


def consumer_process(
    scratch: Scratch, bootstrap: str, topic: str, log_dir: Path, name: str, **settings: str
) -> Process:
    """``consumer_worker.py`` (see its docs) on the scratch schema, in group ``GROUP``."""
    env = {
        "BOOTSTRAP": bootstrap,
        "TOPIC": topic,
        "GROUP": f"{topic}-group",
        "DSN": scratch.dsn,
        "SCHEMA": scratch.schema,
        **settings,
    }
    return Process([sys.executable, str(HERE / "consumer_worker.py")], env, log_dir / f"{name}.log")


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
