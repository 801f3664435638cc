"""Support of the Postgres → NATS end-to-end tests: relay processes, concurrent writers whose
commit order is recorded in the database, reading the JetStream stream back and the
loss / duplicate / order verdict.

Commit order per aggregate: every writer transaction calls ``PostgresOutbox.add_many`` and
then, in the same transaction, inserts its message ids into a test table
``<schema>.audit(seq bigserial, ...)``. ``add_many`` holds a transaction-scoped advisory lock
on each aggregate of the transaction until commit, so a later writer of the same aggregate
cannot draw its ``audit.seq`` before the earlier one commits: ordering the audit rows of one
aggregate by ``seq`` gives the commit order, independently of what the relays do.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import asyncpg
from nats.js.client import JetStreamContext
from outboxkit_postgres import PostgresOutbox, PostgresSettings, PostgresStore

from outboxkit.message import HEADER_AGGREGATE_ID, HEADER_ID, Message

__all__ = [
    "AuditedWriters",
    "Delivery",
    "RelayProcess",
    "Verdict",
    "commit_order",
    "migrate",
    "nats_support",
    "pending",
    "read_deliveries",
    "relay_env",
    "verdict",
    "wait_until",
]

REPO = Path(__file__).resolve().parents[2]


def _load_nats_support() -> ModuleType:
    # tests/nats/nats_support.py, loaded by path (tests/ is not a package); the same module
    # object as the NATS tests' ``import nats_support`` if that ran first.
    name = "nats_support"
    if name not in sys.modules:
        path = REPO / "tests" / "nats" / "nats_support.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


nats_support = _load_nats_support()


# -- schema ----------------------------------------------------------------------------------


async def migrate(dsn: str, schema: str, shards: int) -> None:
    """Create the outbox schema (as ``outboxkit migrate --store pg`` does) and the audit table."""
    store = PostgresStore(PostgresSettings(dsn=dsn, schema=schema, shard_count=shards))
    await store.migrate()
    await store.close()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"CREATE TABLE {schema}.audit (seq bigserial PRIMARY KEY, "
            "aggregate_id text NOT NULL, message_id uuid NOT NULL)"
        )
        await conn.execute(
            f"CREATE TABLE {schema}.business (id bigserial PRIMARY KEY, "
            "aggregate_id text NOT NULL, n int NOT NULL)"
        )
    finally:
        await conn.close()


async def pending(conn: asyncpg.Connection, schema: str) -> int:
    """Messages still in the outbox (not yet acknowledged by a relay)."""
    count: int = await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox")
    return count


async def commit_order(conn: asyncpg.Connection, schema: str) -> dict[str, list[str]]:
    """Message ids per aggregate in commit order (from the audit table)."""
    rows = await conn.fetch(f"SELECT aggregate_id, message_id FROM {schema}.audit ORDER BY seq")
    order: defaultdict[str, list[str]] = defaultdict(list)
    for row in rows:
        order[row["aggregate_id"]].append(str(row["message_id"]))
    return dict(order)


# -- writers ---------------------------------------------------------------------------------


class AuditedWriters:
    """Concurrent writers, each on its own connection, committing business transactions of a
    few messages over one or two random aggregates, never locking an aggregate row themselves.
    """

    def __init__(self, dsn: str, schema: str, subject: str) -> None:
        self.dsn, self.schema, self.subject = dsn, schema, subject
        self.outbox = PostgresOutbox(schema=schema)
        self.committed = 0
        self.transactions = 0

    async def run(
        self, total: int, aggregates: Sequence[str], writers: int = 8, seed: int = 5
    ) -> None:
        remaining = [total]

        async def writer(rng: random.Random) -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                while remaining[0] > 0:
                    count = min(rng.randint(1, 6), remaining[0])
                    remaining[0] -= count
                    chosen = rng.sample(aggregates, rng.randint(1, 2))
                    messages = [self._message(rng.choice(chosen), n) for n in range(count)]
                    await self._commit(conn, messages)
            finally:
                await conn.close()

        async with anyio.create_task_group() as tg:
            for n in range(writers):
                tg.start_soon(writer, random.Random(seed * 1000 + n))

    async def _commit(self, conn: asyncpg.Connection, messages: list[Message]) -> None:
        async with conn.transaction():
            await self.outbox.add_many(conn, messages)
            # The business change and the audit rows, after add_many: its advisory locks on
            # these aggregates are held until COMMIT. One statement, to keep round trips low.
            await conn.execute(
                f"WITH b AS (INSERT INTO {self.schema}.business (aggregate_id, n) "
                "SELECT a, n FROM unnest($1::text[]) WITH ORDINALITY AS x(a, n)) "
                f"INSERT INTO {self.schema}.audit (aggregate_id, message_id) "
                "SELECT a, m FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY AS x(a, m, n) "
                "ORDER BY n",
                [m.aggregate_id for m in messages],
                [m.id for m in messages],
            )
        self.committed += len(messages)
        self.transactions += 1

    def _message(self, aggregate_id: str, n: int) -> Message:
        return Message.create(
            aggregate_type="order",
            aggregate_id=aggregate_id,
            event_type="order.changed",
            payload={"aggregate": aggregate_id, "n": n},
            topic=self.subject,
        )


# -- relays ----------------------------------------------------------------------------------


class RelayProcess:
    """``outboxkit relay --store pg --publisher nats`` in its own process (and session)."""

    def __init__(self, name: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXKIT_")}
        self._env.update(env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RelayProcess:
        argv = [sys.executable, "-m", "outboxkit.cli", "relay", "--store", "pg"]
        argv += ["--publisher", "nats", "--instance-id", self.name, "--log-level", "info"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM (drain, release leases), SIGKILL if it does not exit in time; the exit
        status, or None if it had to be killed."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            return None


def relay_env(dsn: str, schema: str, nats_url: str, stream: str, **extra: Any) -> dict[str, str]:
    """The relays' settings, through ``OUTBOXKIT_*`` variables (as a deployment would)."""
    env = {
        "OUTBOXKIT_PG_DSN": dsn,
        "OUTBOXKIT_PG_SCHEMA": schema,
        "OUTBOXKIT_PG_POOL_MIN": "1",
        "OUTBOXKIT_PG_POOL_MAX": "4",
        "OUTBOXKIT_NATS_SERVERS": nats_url,
        "OUTBOXKIT_NATS_STREAM": stream,
        "OUTBOXKIT_BATCH_SIZE": "200",
        "OUTBOXKIT_LEASE_TTL": "2",
        "OUTBOXKIT_POLL_INTERVAL": "0.5",
    }
    env.update({f"OUTBOXKIT_{k.upper()}": str(v) for k, v in extra.items()})
    return env


async def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll the async ``condition()`` until true; seconds waited; TimeoutError naming ``what``."""
    start = time.monotonic()
    while not await condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not reached within {timeout:g}s")
        await anyio.sleep(interval)
    return time.monotonic() - start


# -- reading the stream back -----------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One stored stream message: which message, of which aggregate, at which sequence."""

    aggregate_id: str
    message_id: str
    msg_id_header: str
    stream_seq: int


async def read_deliveries(
    js: JetStreamContext, stream: str, subjects: str, timeout: float = 30.0
) -> list[Delivery]:
    """Every message of ``stream`` in stream order."""
    messages = await nats_support.read_stream(js, stream, subjects, timeout=timeout)
    found = []
    for m in messages:
        headers = m.headers or {}
        found.append(
            Delivery(
                aggregate_id=headers.get(HEADER_AGGREGATE_ID, ""),
                message_id=headers.get(HEADER_ID, ""),
                msg_id_header=headers.get("Nats-Msg-Id", ""),
                stream_seq=m.metadata.sequence.stream,
            )
        )
    return found


@dataclass
class Verdict:
    """What reached the stream compared with what was committed."""

    delivered: int
    lost: list[str]
    duplicates: int
    unexpected: list[str]
    order_violations: list[str] = field(default_factory=list)
    bad_headers: int = 0

    @property
    def ok(self) -> bool:
        return (
            not (self.lost or self.duplicates or self.unexpected or self.order_violations)
            and not self.bad_headers
        )

    def summary(self) -> str:
        return (
            f"delivered={self.delivered} lost={len(self.lost)} duplicates={self.duplicates} "
            f"unexpected={len(self.unexpected)} order_violations={len(self.order_violations)} "
            f"bad_headers={self.bad_headers} "
            f"(first: {self.lost[:3]} {self.unexpected[:3]} {self.order_violations[:2]})"
        )


def verdict(deliveries: Sequence[Delivery], committed: Mapping[str, Sequence[str]]) -> Verdict:
    """Compare ``deliveries`` (stream order) with ``committed`` (ids per aggregate in commit
    order). Order is checked on the first delivery of each message."""
    expected = {m for ids in committed.values() for m in ids}
    aggregate_of = {m: a for a, ids in committed.items() for m in ids}
    seen: set[str] = set()
    firsts: defaultdict[str, list[str]] = defaultdict(list)
    duplicates = bad_headers = 0
    for d in sorted(deliveries, key=lambda d: d.stream_seq):
        if d.msg_id_header != d.message_id or (
            d.message_id in aggregate_of and aggregate_of[d.message_id] != d.aggregate_id
        ):
            bad_headers += 1
        if d.message_id in seen:
            duplicates += 1
            continue
        seen.add(d.message_id)
        firsts[d.aggregate_id].append(d.message_id)
    violations = []
    for a, ids in committed.items():
        got, want = firsts.get(a, []), [m for m in ids if m in seen]
        if got != want:
            at = next((i for i, (x, y) in enumerate(zip(got, want, strict=False)) if x != y), 0)
            violations.append(
                f"aggregate {a}: first deliveries differ from commit order at index {at} "
                f"(got {got[at : at + 3]}, want {want[at : at + 3]})"
            )
    return Verdict(
        delivered=len(deliveries),
        lost=sorted(expected - seen),
        duplicates=duplicates,
        unexpected=sorted(seen - expected),
        order_violations=violations,
        bad_headers=bad_headers,
    )
